//! The LTTng live viewer protocol (version 2.4) server, so that `babeltrace2
//! --input-format=lttng-live` can follow traces the relay is writing.
