//! Writing CTF 1.8 traces in the LTTng kernel layout: TSDL metadata text and packets.
