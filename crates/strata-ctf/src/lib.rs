//! CTF 1.8: TSDL metadata parse and emit, packet reader and writer, index files.
//!
//! Everything here works on bytes and text and does no file I/O of its own,
//! except the `read` module's trace opener, which maps stream files.

pub mod index;
pub mod read;
pub mod write;
