//! Writes a synthetic SS-MIX2 storage (see `tobiume_gateway::ssmix2::synth`).
//!
//! Usage: `cargo run --release --example synth -- <out_root | --memory> <patients> [seed]`
//! (`--memory` renders without writing, to time the synthesizer itself).
//! Prints `patients files bytes seconds` on stdout.
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: synth <out_root> <patients> [seed]");
        std::process::exit(2);
    }
    let patients: usize = args[2].parse().unwrap_or_else(|_| {
        eprintln!("patients must be a number");
        std::process::exit(2)
    });
    let seed: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let t = Instant::now();
    if args[1] == "--memory" {
        // Render only (no disk): measures the synthesizer itself.
        let s = tobiume_gateway::ssmix2::synth::Synthesizer::new(seed);
        let (mut files, mut bytes) = (0usize, 0usize);
        for i in 0..patients {
            for f in s.patient_files(i).1 {
                files += 1;
                bytes += f.bytes.len();
            }
        }
        println!("{patients} {files} {bytes} {:.3}", t.elapsed().as_secs_f64());
        return;
    }
    match tobiume_gateway::ssmix2::synth::generate(std::path::Path::new(&args[1]), patients, seed) {
        Ok(s) => println!("{} {} {} {:.3}", s.patients, s.files, s.bytes, t.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("synth: {e}");
            std::process::exit(1);
        }
    }
}
