//! Turns one host's ftrace records into an LTTng-layout CTF trace on disk.
