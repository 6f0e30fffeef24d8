//! CTF 1.8: TSDL metadata parse and emit, packet reader and writer, index files.
