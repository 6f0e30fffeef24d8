//! `strata`: one command for recording, analysing and streaming kernel traces.

fn main() {
    println!("strata: nothing here yet");
}
