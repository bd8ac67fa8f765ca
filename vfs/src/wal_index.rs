//! The wal-index header at the start of `-shm` region 0, as described in SQLite's
//! `walformat.html` and `wal.c`: two copies of the 48-byte `WalIndexHdr`, then `WalCkptInfo`.
//! All fields are in native byte order.
//!
//! [`WalIndex::parse`] reads a byte copy (the sidecar `pread`s the `-shm` file); the shim reads
//! the live mapping through [`WalIndex::read_live`], the way SQLite itself does.

use std::sync::atomic::{fence, AtomicU32, Ordering};

/// Bytes of the header that walwatch reads (through `nBackfillAttempted`).
pub const HEADER_BYTES: usize = 136;
const HDR_COPY: usize = 48;
const OFF_IS_INIT: usize = 12;
const OFF_PAGE_SIZE: usize = 14;
const OFF_MX_FRAME: usize = 16;
const OFF_N_PAGE: usize = 20;
/// `aSalt[0]` of the header.
const OFF_SALT: usize = 32;
const OFF_N_BACKFILL: usize = 96;
const OFF_READ_MARKS: usize = 100;
const OFF_N_BACKFILL_ATTEMPTED: usize = 128;

/// Number of reader slots (READ0..READ4).
pub const READ_MARKS: usize = 5;
/// An unused read mark (`READMARK_NOT_USED` in `wal.c`).
pub const READ_MARK_NOT_USED: u32 = 0xffff_ffff;

/// What walwatch needs from the wal-index header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalIndex {
    /// Database page size in bytes.
    pub page_size: u32,
    /// Index of the last valid frame in the WAL (frames in the log).
    pub mx_frame: u32,
    /// Database size in pages after the last commit.
    pub n_page: u32,
    /// Frames already copied back into the database.
    pub n_backfill: u32,
    /// Frames a checkpoint has tried to copy (may lead `n_backfill` briefly).
    pub n_backfill_attempted: u32,
    /// `aReadMark[0..5]`.
    pub read_marks: [u32; READ_MARKS],
}

#[derive(Debug, PartialEq, Eq)]
pub enum WalIndexError {
    /// Fewer than [`HEADER_BYTES`] bytes: the `-shm` file is empty or truncated.
    TooShort(usize),
    /// `isInit` is 0: no connection has built the wal-index yet.
    NotInitialized,
    /// The two header copies differ: a writer was updating it; read again.
    Torn,
}

impl std::fmt::Display for WalIndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort(n) => write!(
                f,
                "-shm holds {n} bytes, fewer than the {HEADER_BYTES}-byte wal-index header"
            ),
            Self::NotInitialized => f.write_str("the wal-index header is not initialized yet"),
            Self::Torn => f.write_str(
                "the two copies of the wal-index header differ (a write was in progress)",
            ),
        }
    }
}

impl std::error::Error for WalIndexError {}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(bytes[off..off + 4].try_into().expect("4 bytes"))
}

impl WalIndex {
    /// Parses a copy of the first [`HEADER_BYTES`] of `-shm`.
    pub fn parse(bytes: &[u8]) -> Result<Self, WalIndexError> {
        if bytes.len() < HEADER_BYTES {
            return Err(WalIndexError::TooShort(bytes.len()));
        }
        if bytes[..HDR_COPY] != bytes[HDR_COPY..2 * HDR_COPY] {
            return Err(WalIndexError::Torn);
        }
        if bytes[OFF_IS_INIT] == 0 {
            return Err(WalIndexError::NotInitialized);
        }
        // szPage is a u16; 1 encodes 65536 (see walIndexReadHdr).
        let raw_page = u16::from_ne_bytes([bytes[OFF_PAGE_SIZE], bytes[OFF_PAGE_SIZE + 1]]) as u32;
        let page_size = (raw_page & 0xfe00) + ((raw_page & 0x0001) << 16);
        let mut read_marks = [0; READ_MARKS];
        for (i, mark) in read_marks.iter_mut().enumerate() {
            *mark = u32_at(bytes, OFF_READ_MARKS + 4 * i);
        }
        Ok(Self {
            page_size,
            mx_frame: u32_at(bytes, OFF_MX_FRAME),
            n_page: u32_at(bytes, OFF_N_PAGE),
            n_backfill: u32_at(bytes, OFF_N_BACKFILL),
            n_backfill_attempted: u32_at(bytes, OFF_N_BACKFILL_ATTEMPTED),
            read_marks,
        })
    }

    /// Reads the live header from a mapped `-shm` region 0, as SQLite does: first copy, memory
    /// barrier, second copy, compare; retried a few times while a writer is mid-update.
    ///
    /// # Safety
    /// `shm` must point to at least [`HEADER_BYTES`] mapped, 4-byte aligned bytes (SQLite's
    /// region 0 is 32 KiB and page aligned) that stay mapped for the duration of the call.
    pub unsafe fn read_live(shm: *const u8) -> Result<Self, WalIndexError> {
        let mut copy = [0u8; HEADER_BYTES];
        let mut last = Err(WalIndexError::Torn);
        for _ in 0..4 {
            for word in 0..HEADER_BYTES / 4 {
                if word == HDR_COPY / 4 {
                    fence(Ordering::SeqCst);
                }
                // SAFETY: in bounds and aligned per the caller's contract; other processes write
                // this memory concurrently, so it is read through atomics, never plain loads.
                let value = unsafe { AtomicU32::from_ptr(shm.add(word * 4) as *mut u32) }
                    .load(Ordering::Relaxed);
                copy[word * 4..word * 4 + 4].copy_from_slice(&value.to_ne_bytes());
            }
            last = Self::parse(&copy);
            if last != Err(WalIndexError::Torn) {
                break;
            }
        }
        last
    }

    /// Frames in the WAL not yet copied into the database.
    pub fn frames_pending(&self) -> u32 {
        self.mx_frame.saturating_sub(self.n_backfill)
    }
}

/// The live wal-index of a connection: `-shm` region 0 as mapped by SQLite, or, before SQLite
/// maps it, [`LiveWalIndex::NONE`]: a header of zeros (not initialized), so that reading it
/// needs no null check on the hot path.
#[derive(Clone, Copy, Debug)]
pub struct LiveWalIndex(*const u8);

/// The header [`LiveWalIndex::NONE`] reads: zeros, never written.
static UNMAPPED: [AtomicU32; HEADER_BYTES / 4] = [const { AtomicU32::new(0) }; HEADER_BYTES / 4];

impl LiveWalIndex {
    /// No wal-index mapped (yet): reads as a header of zeros (`header()` is `None`, no frames,
    /// read marks 0).
    pub const NONE: Self = Self(UNMAPPED.as_ptr().cast());

    /// # Safety
    /// `shm0` must be [`LiveWalIndex::as_ptr`] of [`LiveWalIndex::NONE`], or region 0 as
    /// returned by a successful `xShmMap` (at least 32 KiB, page aligned) that stays mapped
    /// while this value is used.
    pub unsafe fn new(shm0: *const u8) -> Self {
        Self(shm0)
    }

    /// The pointer this reads (for [`LiveWalIndex::new`]).
    pub fn as_ptr(self) -> *const u8 {
        self.0
    }

    /// The header, read as SQLite reads it ([`WalIndex::read_live`]); `None` if not mapped or
    /// not initialized.
    pub fn header(self) -> Option<WalIndex> {
        // SAFETY: per `new`'s contract, a live, aligned header of at least HEADER_BYTES.
        unsafe { WalIndex::read_live(self.0) }.ok()
    }

    /// The header's frame count, salt and page size: three loads, for a writer holding the
    /// write lock (see [`WalFrames`]); zeros if not mapped.
    pub fn frames(self) -> WalFrames {
        // SAFETY: per `new`'s contract; offsets 12, 16 and 32 are inside the header and 4-byte
        // aligned; shared memory is read through atomics. SQLite writes the header in native
        // byte order; `szPage` (bytes 14..16) is the upper half of the word at 12 on a
        // little-endian machine, the lower half on a big-endian one.
        let (word12, mx_frame, salt) = unsafe {
            let at = |off: usize| AtomicU32::from_ptr(self.0.add(off) as *mut u32);
            (
                at(OFF_IS_INIT).load(Ordering::Relaxed),
                at(OFF_MX_FRAME).load(Ordering::Relaxed),
                at(OFF_SALT).load(Ordering::Relaxed),
            )
        };
        const _: () = assert!(OFF_PAGE_SIZE == OFF_IS_INIT + 2);
        let sz_page = if cfg!(target_endian = "little") {
            word12 >> 16
        } else {
            word12 & 0xffff
        };
        WalFrames {
            mx_frame,
            salt,
            sz_page,
        }
    }

    /// `aReadMark[index]` alone: one load, for the start of every read transaction, when the
    /// caller holds READ(index) so the mark cannot change under it; 0 if not mapped (or no
    /// such slot).
    pub fn read_mark(self, index: usize) -> u32 {
        if index >= READ_MARKS {
            return 0;
        }
        // SAFETY: per `new`'s contract; offset 100 + 4*index < 120 is inside the header and
        // 4-byte aligned; shared memory is read through an atomic.
        let mark =
            unsafe { AtomicU32::from_ptr(self.0.add(OFF_READ_MARKS + 4 * index) as *mut u32) };
        mark.load(Ordering::Relaxed)
    }
}

/// What the wal-index header says about the frames in the WAL, read by a writer while it holds
/// the write lock (so they cannot change under it): enough to tell how many bytes a write
/// transaction appended to `-wal` without watching its writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalFrames {
    /// `mxFrame`: valid frames in the WAL.
    pub mx_frame: u32,
    /// `aSalt[0]`: changes each time the WAL restarts from its first frame.
    pub salt: u32,
    /// `szPage` as stored: the page size, 1 for 65,536 (it does not fit in 16 bits), 0 before
    /// the first write.
    pub sz_page: u32,
}

impl WalFrames {
    /// Bytes a write transaction appended to `-wal`, from the header when it took the write
    /// lock (`self`) and when it released it (`end`): its frames, and the 32-byte WAL header
    /// when it started the WAL afresh (a restart changes the salt; the frames then count from
    /// the first).
    #[inline(always)]
    pub fn appended_bytes(self, end: WalFrames) -> u64 {
        // Appended to the same WAL, which already had frames: only the new frames.
        let appended_to = end.salt == self.salt && self.mx_frame != 0;
        let from = if appended_to { self.mx_frame } else { 0 };
        let frames = end.mx_frame.saturating_sub(from) as u64;
        if frames == 0 {
            return 0;
        }
        let header = if appended_to { 0 } else { 32 };
        frames * end.frame_bytes() as u64 + header
    }

    /// Bytes of one frame: the page size plus the 24-byte frame header (0 if unknown).
    #[inline(always)]
    pub fn frame_bytes(self) -> u32 {
        // Page sizes are powers of two from 512; 65,536 is stored as 1: no branch.
        let page = (self.sz_page & 0xfffe) | ((self.sz_page & 1) << 16);
        if page == 0 {
            0
        } else {
            page + 24
        }
    }

    /// The size of `-wal` that holds these frames (its header and every frame).
    pub fn file_bytes(self) -> u64 {
        if self.mx_frame == 0 {
            0
        } else {
            32 + self.mx_frame as u64 * self.frame_bytes() as u64
        }
    }
}

/// A process holding one `-shm` lock slot, from `/proc/locks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotHolder {
    pub pid: u32,
    /// Lock slot (0 = WRITE … 7 = READ4): byte `120 + slot` of `-shm`.
    pub slot: usize,
}

/// Byte of `-shm` that SQLite's unix VFS locks for slot 0 (`WALINDEX_LOCK_OFFSET`, also
/// `UNIX_SHM_BASE` in `os_unix.c`): slot `i` (see `layout::SLOT_NAMES`) is byte
/// `SHM_LOCK_BASE + i`.
pub const SHM_LOCK_BASE: u64 = 120;

/// Who holds which of `slots` of the `-shm` file at `shm_path`, from `/proc/locks`: works for
/// every process, walwatch or not, and opens nothing (opening and closing the `-shm` file here
/// would drop this process's own POSIX locks on it). Empty when it cannot tell.
pub fn shm_lock_holders(shm_path: &[u8], slots: std::ops::Range<usize>) -> Vec<SlotHolder> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(shm_path));
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let Ok(text) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let exact = parse_proc_locks(&text, Some((major, minor)), meta.ino(), slots.clone());
    if !exact.is_empty() {
        return exact;
    }
    // On overlay file systems `/proc/locks` names the underlying device: match the inode alone.
    parse_proc_locks(&text, None, meta.ino(), slots)
}

/// The holders of `slots` in the text of `/proc/locks` for the file `(major, minor, ino)`
/// (`dev = None`: any device). Only POSIX locks with a pid (SQLite's unix VFS uses them).
pub fn parse_proc_locks(
    text: &str,
    dev: Option<(u64, u64)>,
    ino: u64,
    slots: std::ops::Range<usize>,
) -> Vec<SlotHolder> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: POSIX  ADVISORY  READ  1234 08:02:131 124 124"; waiters have "->" after the id.
        if fields.len() != 8 || fields[1] != "POSIX" {
            continue;
        }
        let Ok(pid) = fields[4].parse::<u32>() else {
            continue;
        };
        let mut file = fields[5].split(':');
        let (Some(maj), Some(min), Some(file_ino), None) =
            (file.next(), file.next(), file.next(), file.next())
        else {
            continue;
        };
        if file_ino.parse::<u64>() != Ok(ino) {
            continue;
        }
        if let Some((want_maj, want_min)) = dev {
            let same = u64::from_str_radix(maj, 16) == Ok(want_maj)
                && u64::from_str_radix(min, 16) == Ok(want_min);
            if !same {
                continue;
            }
        }
        let Ok(start) = fields[6].parse::<u64>() else {
            continue;
        };
        let end = if fields[7] == "EOF" {
            u64::MAX
        } else {
            match fields[7].parse::<u64>() {
                Ok(end) => end,
                Err(_) => continue,
            }
        };
        for slot in slots.clone() {
            let byte = SHM_LOCK_BASE + slot as u64;
            if (start..=end).contains(&byte) {
                out.push(SlotHolder { pid, slot });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(mx_frame: u32, n_backfill: u32) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_BYTES];
        b[OFF_IS_INIT] = 1;
        b[OFF_PAGE_SIZE..OFF_PAGE_SIZE + 2].copy_from_slice(&4096u16.to_ne_bytes());
        b[OFF_MX_FRAME..OFF_MX_FRAME + 4].copy_from_slice(&mx_frame.to_ne_bytes());
        let (first, second) = b.split_at_mut(HDR_COPY);
        second[..HDR_COPY].copy_from_slice(first);
        b[OFF_N_BACKFILL..OFF_N_BACKFILL + 4].copy_from_slice(&n_backfill.to_ne_bytes());
        b
    }

    #[test]
    fn parses_frames_and_page_size() {
        let idx = WalIndex::parse(&header(1031, 2)).unwrap();
        assert_eq!(
            (idx.page_size, idx.mx_frame, idx.n_backfill),
            (4096, 1031, 2)
        );
        assert_eq!(idx.frames_pending(), 1029);
    }

    #[test]
    fn page_size_one_means_64k() {
        let mut b = header(1, 0);
        for off in [OFF_PAGE_SIZE, HDR_COPY + OFF_PAGE_SIZE] {
            b[off..off + 2].copy_from_slice(&1u16.to_ne_bytes());
        }
        assert_eq!(WalIndex::parse(&b).unwrap().page_size, 65536);
    }

    #[test]
    fn a_writer_reads_frames_salt_and_frame_size_from_the_live_header() {
        let mut b = header(7, 0);
        b[OFF_SALT..OFF_SALT + 4].copy_from_slice(&0xfeed_u32.to_ne_bytes());
        // Region 0 as SQLite maps it: 4-byte aligned (u32 storage).
        let mut region = [0u32; HEADER_BYTES / 4];
        for (word, bytes) in region.iter_mut().zip(b.chunks(4)) {
            *word = u32::from_ne_bytes(bytes.try_into().unwrap());
        }
        // SAFETY: `region` is a live, aligned header for the duration of the calls.
        let live = unsafe { LiveWalIndex::new(region.as_ptr().cast()) };
        let frames = live.frames();
        assert_eq!(
            frames,
            WalFrames {
                mx_frame: 7,
                salt: 0xfeed,
                sz_page: 4096
            }
        );
        assert_eq!(frames.frame_bytes(), 4096 + 24);
        assert_eq!(frames.file_bytes(), 32 + 7 * 4120);
        assert_eq!(LiveWalIndex::NONE.frames(), WalFrames::default());
        assert_eq!(LiveWalIndex::NONE.header(), None);
        assert_eq!(LiveWalIndex::NONE.read_mark(2), 0);
        // szPage 1 is 65,536.
        region[OFF_IS_INIT / 4] = u32::from_ne_bytes([1, 0, 1, 0]);
        // SAFETY: as above.
        let live = unsafe { LiveWalIndex::new(region.as_ptr().cast()) };
        assert_eq!(live.frames().frame_bytes(), 65_536 + 24);
    }

    #[test]
    fn appended_bytes_count_frames_and_the_header_of_a_restarted_wal() {
        let at = |mx_frame, salt| WalFrames {
            mx_frame,
            salt,
            sz_page: 4096,
        };
        // Appended to a WAL: only the new frames.
        assert_eq!(at(10, 1).appended_bytes(at(13, 1)), 3 * 4120);
        // The first transaction of an empty WAL also wrote the 32-byte header.
        assert_eq!(at(0, 1).appended_bytes(at(2, 1)), 32 + 2 * 4120);
        // The writer restarted the WAL (new salt): its frames count from the first.
        assert_eq!(at(500, 1).appended_bytes(at(4, 2)), 32 + 4 * 4120);
        // A write lock that wrote nothing (or a checkpoint that reset the WAL).
        assert_eq!(at(10, 1).appended_bytes(at(10, 1)), 0);
        assert_eq!(at(10, 1).appended_bytes(at(0, 2)), 0);
        assert_eq!(at(0, 1).file_bytes(), 0);
    }

    #[test]
    fn finds_lock_holders_in_proc_locks() {
        let text = "1: POSIX  ADVISORY  READ  4242 00:2c:77 125 125\n\
                    2: POSIX  ADVISORY  WRITE 99 00:2c:77 120 121\n\
                    3: POSIX  ADVISORY  READ  5 00:2d:77 126 126\n\
                    4: -> POSIX  ADVISORY  WRITE 7 00:2c:77 124 127\n\
                    5: FLOCK  ADVISORY  WRITE 8 00:2c:77 0 EOF\n\
                    6: POSIX  ADVISORY  READ  6 00:2c:78 124 EOF\n";
        let held = parse_proc_locks(text, Some((0, 0x2c)), 77, 4..8);
        assert_eq!(held, vec![SlotHolder { pid: 4242, slot: 5 }]);
        let write = parse_proc_locks(text, Some((0, 0x2c)), 77, 0..1);
        assert_eq!(write, vec![SlotHolder { pid: 99, slot: 0 }]);
        let any_dev = parse_proc_locks(text, None, 77, 4..8);
        assert_eq!(any_dev.len(), 2);
        assert!(parse_proc_locks("garbage\n", None, 77, 0..8).is_empty());
    }

    #[test]
    fn rejects_torn_short_and_uninitialized() {
        let mut torn = header(5, 0);
        torn[OFF_MX_FRAME] = 9;
        assert_eq!(WalIndex::parse(&torn), Err(WalIndexError::Torn));
        assert_eq!(
            WalIndex::parse(&[0u8; 10]),
            Err(WalIndexError::TooShort(10))
        );
        assert_eq!(
            WalIndex::parse(&[0u8; HEADER_BYTES]),
            Err(WalIndexError::NotInitialized)
        );
    }
}

/// Real `-shm` and `-wal` files captured from SQLite (`tests/fixtures/`, see its README.md):
/// an offset of the wal-index header read wrong fails here.
#[cfg(test)]
mod fixtures {
    use super::*;

    const UNUSED: u32 = READ_MARK_NOT_USED;

    /// The big-endian u32 at `off` of a `-wal` header (the WAL header is big-endian; the
    /// wal-index is native-endian).
    fn be32(bytes: &[u8], off: usize) -> u32 {
        u32::from_be_bytes(bytes[off..off + 4].try_into().unwrap())
    }

    /// Magic (either checksum byte order), format 3007000 and page size of a `-wal` header.
    fn wal_header(bytes: &[u8]) -> (u32, u32) {
        assert!(
            matches!(be32(bytes, 0), 0x377f_0682 | 0x377f_0683),
            "not a -wal"
        );
        (be32(bytes, 4), be32(bytes, 8))
    }

    /// Debian's SQLite 3.40.1 (Python's sqlite3), after a PASSIVE checkpoint copied all 30
    /// frames and 3 more commits restarted the log: 5 frames, none backfilled.
    #[test]
    fn sqlite_3_40_1_shm_and_wal_agree() {
        let shm = include_bytes!("../../tests/fixtures/sqlite-3.40.1.shm");
        assert_eq!(shm.len(), 32 * 1024);
        let idx = WalIndex::parse(shm).unwrap();
        assert_eq!(
            idx,
            WalIndex {
                page_size: 4096,
                mx_frame: 5,
                n_page: 5,
                n_backfill: 0,
                n_backfill_attempted: 0,
                read_marks: [0, 4, UNUSED, UNUSED, UNUSED],
            }
        );
        assert_eq!(idx.frames_pending(), 5);
        // The -wal of the same moment: header, then mxFrame frames of 24 + page size bytes.
        let wal = include_bytes!("../../tests/fixtures/app.db-wal");
        assert_eq!(wal_header(wal), (3_007_000, idx.page_size));
        assert_eq!(
            wal.len(),
            32 + idx.mx_frame as usize * (24 + idx.page_size as usize)
        );
    }

    /// SQLite 3.54.1 (apsw): the same header layout, 1 frame after a PASSIVE checkpoint.
    #[test]
    fn sqlite_3_54_1_shm_parses() {
        let shm = include_bytes!("../../tests/fixtures/sqlite-3.54.1.shm");
        let idx = WalIndex::parse(shm).unwrap();
        assert_eq!(
            idx,
            WalIndex {
                page_size: 4096,
                mx_frame: 1,
                n_page: 2,
                n_backfill: 0,
                n_backfill_attempted: 0,
                read_marks: [0, 0, UNUSED, UNUSED, UNUSED],
            }
        );
        let wal = include_bytes!("../../tests/fixtures/sqlite-3.54.1.wal-header");
        assert_eq!(wal_header(wal), (3_007_000, 4096));
        // Only the header is read: a -shm cut after it parses the same, one byte less does not.
        assert_eq!(WalIndex::parse(&shm[..HEADER_BYTES]), Ok(idx));
        assert_eq!(
            WalIndex::parse(&shm[..HEADER_BYTES - 1]),
            Err(WalIndexError::TooShort(HEADER_BYTES - 1))
        );
    }
}
