//! Reading CTF 1.8 traces: TSDL metadata parsing, packet and event decoding, and the time-ordered merge of all streams.
