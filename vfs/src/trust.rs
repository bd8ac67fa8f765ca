//! The rules for what a stats directory and a stats file must be before anyone uses them.
//! One definition, applied by the shim (before it creates or maps a file) and by the sidecar
//! (before it reads one, and before it acts on the database a file names).
//!
//! The rules follow PostgreSQL's checks on its data and socket directories and the
//! `XDG_RUNTIME_DIR` convention:
//! - a **stats directory** is owned by the user whose files it holds, or by root, and no other
//!   unprivileged user can write it. The one exception is the operator's choice of a group: a
//!   group-writable directory is accepted only with the sticky bit, so members of the group can
//!   add their own files but never rename, replace or delete anyone else's. A world-writable
//!   directory is never accepted: anyone could plant names in it.
//! - a **stats file** is a regular file (never a symlink, FIFO or device: callers open with
//!   `O_NOFOLLOW`) with exactly one link (a hard link to someone's `-wal` would have two),
//!   owned by the user who writes it, and writable by no one else.
//!
//! The checks are pure functions over [`Facts`] so both sides and the tests share them; the
//! callers take the facts from `fstat` on the descriptor they then use, never from a path
//! looked up twice.

use std::fmt;

/// What `fstat` says of a file or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// Owner (`st_uid`).
    pub uid: u32,
    /// Group (`st_gid`).
    pub gid: u32,
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    /// Number of hard links (`st_nlink`).
    pub links: u64,
}

impl Facts {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode(),
            links: meta.nlink(),
        }
    }

    fn kind(&self) -> Kind {
        match self.mode & S_IFMT {
            S_IFREG => Kind::Regular,
            S_IFDIR => Kind::Directory,
            S_IFLNK => Kind::Symlink,
            S_IFIFO => Kind::Fifo,
            S_IFSOCK => Kind::Socket,
            S_IFCHR | S_IFBLK => Kind::Device,
            _ => Kind::Other,
        }
    }
}

// The POSIX file-type bits of st_mode (the same on every Unix that Linux programs run on).
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const STICKY: u32 = 0o1000;
const SETGID: u32 = 0o2000;
const GROUP_WRITE: u32 = 0o020;
const OTHER_WRITE: u32 = 0o002;

/// What a path turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    Device,
    Other,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Regular => "a regular file",
            Kind::Directory => "a directory",
            Kind::Symlink => "a symbolic link",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::Device => "a device",
            Kind::Other => "not a regular file",
        }
    }
}

/// Why a directory or file is refused. Each says what was found; [`Refusal::advice`] says what
/// to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not the kind of file expected (a FIFO named `*.walwatch`, a directory that is a file).
    WrongKind { found: Kind, expected: Kind },
    /// Owned by someone who may not provide it.
    Owner { found: u32, expected: u32 },
    /// Writable by users other than its owner (mode shown).
    Writable { mode: u32 },
    /// More than one hard link.
    Links { links: u64 },
}

impl Refusal {
    /// A stable short label, for metrics (`reason`) and tests.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::WrongKind { .. } => "not_regular",
            Refusal::Owner { .. } => "owner",
            Refusal::Writable { .. } => "writable_by_others",
            Refusal::Links { .. } => "hard_linked",
        }
    }

    /// What an operator should do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            Refusal::WrongKind { .. } => "remove it; walwatch creates its own files",
            Refusal::Owner { .. } => {
                "remove it, or use a stats directory of the user that runs the database (unset WALWATCH_DIR for the private default)"
            }
            Refusal::Writable { .. } => {
                "chmod go-w it (a group-shared directory needs the sticky bit: chmod 3770)"
            }
            Refusal::Links { .. } => "remove the extra link; stats files are never hard-linked",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::WrongKind { found, expected } => {
                write!(f, "it is {}, not {}", found.name(), expected.name())
            }
            Refusal::Owner { found, expected } => {
                write!(f, "it is owned by uid {found}, not uid {expected}")
            }
            Refusal::Writable { mode } => {
                write!(f, "other users can write it (mode {:04o})", mode & 0o7777)
            }
            Refusal::Links { links } => write!(f, "it has {links} hard links, not 1"),
        }
    }
}

/// Whether `dir` may hold the stats files of user `uid`: a directory, owned by `uid` or root,
/// writable by no one else, except a group-writable directory with the sticky bit (the
/// operator's shared group).
pub fn check_dir(dir: &Facts, uid: u32) -> Result<(), Refusal> {
    if dir.kind() != Kind::Directory {
        return Err(Refusal::WrongKind {
            found: dir.kind(),
            expected: Kind::Directory,
        });
    }
    if dir.uid != uid && dir.uid != 0 {
        return Err(Refusal::Owner {
            found: dir.uid,
            expected: uid,
        });
    }
    let others_write = dir.mode & OTHER_WRITE != 0;
    let group_write_unsticky = dir.mode & GROUP_WRITE != 0 && dir.mode & STICKY == 0;
    if others_write || group_write_unsticky {
        return Err(Refusal::Writable { mode: dir.mode });
    }
    Ok(())
}

/// Whether `file` is a stats file that user `uid` may have written: a regular file with one
/// link, owned by `uid`, writable by no one else.
pub fn check_file(file: &Facts, uid: u32) -> Result<(), Refusal> {
    if file.kind() != Kind::Regular {
        return Err(Refusal::WrongKind {
            found: file.kind(),
            expected: Kind::Regular,
        });
    }
    if file.uid != uid {
        return Err(Refusal::Owner {
            found: file.uid,
            expected: uid,
        });
    }
    if file.mode & (GROUP_WRITE | OTHER_WRITE) != 0 {
        return Err(Refusal::Writable { mode: file.mode });
    }
    if file.links != 1 {
        return Err(Refusal::Links { links: file.links });
    }
    Ok(())
}

/// The mode for a new stats file in `dir`: private (0600), or readable by the directory's
/// group (0640) when the operator marked the directory set-group-ID, so that new files take
/// its group: that is how an operator shares stats files with a sidecar's group.
pub fn new_file_mode(dir: &Facts) -> u32 {
    if dir.mode & SETGID != 0 {
        0o640
    } else {
        0o600
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(uid: u32, mode: u32) -> Facts {
        Facts {
            uid,
            gid: 0,
            mode: S_IFDIR | mode,
            links: 2,
        }
    }

    fn file(uid: u32, mode: u32, links: u64) -> Facts {
        Facts {
            uid,
            gid: 0,
            mode: S_IFREG | mode,
            links,
        }
    }

    #[test]
    fn directories() {
        assert_eq!(check_dir(&dir(1000, 0o700), 1000), Ok(()));
        assert_eq!(check_dir(&dir(0, 0o755), 1000), Ok(()));
        assert_eq!(
            check_dir(&dir(0, 0o3770), 1000),
            Ok(()),
            "operator's shared group"
        );
        // The attack of issue 9: a 1777 directory made by whoever came first.
        assert_eq!(
            check_dir(&dir(1001, 0o1777), 1000),
            Err(Refusal::Owner {
                found: 1001,
                expected: 1000
            })
        );
        assert_eq!(
            check_dir(&dir(0, 0o1777), 1000).unwrap_err().reason(),
            "writable_by_others"
        );
        assert_eq!(
            check_dir(&dir(1000, 0o770), 1000).unwrap_err().reason(),
            "writable_by_others"
        );
        let fifo = Facts {
            mode: S_IFIFO | 0o700,
            ..dir(1000, 0)
        };
        assert_eq!(check_dir(&fifo, 1000).unwrap_err().reason(), "not_regular");
    }

    #[test]
    fn files() {
        assert_eq!(check_file(&file(1000, 0o600, 1), 1000), Ok(()));
        assert_eq!(check_file(&file(1000, 0o640, 1), 1000), Ok(()));
        assert_eq!(
            check_file(&file(1001, 0o600, 1), 1000)
                .unwrap_err()
                .reason(),
            "owner"
        );
        assert_eq!(
            check_file(&file(1000, 0o666, 1), 1000)
                .unwrap_err()
                .reason(),
            "writable_by_others"
        );
        assert_eq!(
            check_file(&file(1000, 0o600, 2), 1000)
                .unwrap_err()
                .reason(),
            "hard_linked"
        );
        let link = Facts {
            mode: S_IFLNK | 0o777,
            ..file(1000, 0, 1)
        };
        assert_eq!(
            check_file(&link, 1000),
            Err(Refusal::WrongKind {
                found: Kind::Symlink,
                expected: Kind::Regular
            })
        );
        assert!(check_file(&link, 1000)
            .unwrap_err()
            .to_string()
            .contains("symbolic link"));
    }

    #[test]
    fn new_files_are_private_unless_the_directory_shares_its_group() {
        assert_eq!(new_file_mode(&dir(1000, 0o700)), 0o600);
        assert_eq!(new_file_mode(&dir(0, 0o3770)), 0o640);
    }
}
