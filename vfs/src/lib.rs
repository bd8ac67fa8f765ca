pub mod ffi;
pub mod layout;
pub mod paths;
pub mod snapshot;
pub mod wal_index;
