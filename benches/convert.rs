//! SS-MIX2 conversion throughput (single thread).
//!
//! Two modes:
//! * `cargo bench --bench convert` — criterion, in memory, over a synthetic corpus
//!   (`ssmix2::synth`, 50 patients × 19 files): (a) decode+parse only (the ceiling), (b) full
//!   conversion (parse + map + NDJSON serialization), (c) synthesizer rendering.
//! * `CONVERT_CORPUS=<storage root> cargo bench --bench convert` — one timed pass over an on-disk
//!   storage (see `bench/convert.sh`): (a) walk + read + decode+parse, (b) walk + read + version
//!   resolution + `convert_patient` (parse + map) + NDJSON to a sink (plus (w) walk only and (r)
//!   walk + read, to show what the directory layout costs); prints files/s, MB/s, the ratio
//!   (b)/(a) and the peak RSS (`VmHWM`) to check that memory is flat in corpus size.

use criterion::{BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use tobiume_gateway::hl7v2::{DecodeOptions, Message};
use tobiume_gateway::mapping::ssmix2::convert::{convert_bytes, convert_patient, ConvertOptions, FileStatus};
use tobiume_gateway::ssmix2::{self, synth::Synthesizer, StorageFile};

/// Byte counter standing in for the NDJSON output file.
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write_ndjson(out: &mut impl Write, resources: &[serde_json::Value]) {
    for r in resources {
        let _ = serde_json::to_writer(&mut *out, r);
        let _ = out.write_all(b"\n");
    }
}

fn in_memory_corpus(patients: usize) -> Vec<(StorageFile, Vec<u8>)> {
    let s = Synthesizer::new(2026);
    (0..patients)
        .flat_map(|i| s.patient_files(i).1)
        .map(|f| (StorageFile::synthetic(Path::new("/bench"), f.name), f.bytes))
        .collect()
}

fn criterion_benches(c: &mut Criterion) {
    let corpus = in_memory_corpus(50);
    let bytes: u64 = corpus.iter().map(|(_, b)| b.len() as u64).sum();
    let opts = ConvertOptions::default();
    let mut g = c.benchmark_group("ssmix2");
    g.sample_size(20);
    for (label, t) in [("bytes", Throughput::Bytes(bytes)), ("files", Throughput::Elements(corpus.len() as u64))] {
        g.throughput(t);
        g.bench_with_input(BenchmarkId::new("a_decode_parse", label), &corpus, |b, corpus| {
            b.iter(|| {
                for (_, data) in corpus {
                    black_box(Message::parse(data, &DecodeOptions::default()).map(|m| m.len()).ok());
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("b_full_conversion", label), &corpus, |b, corpus| {
            b.iter(|| {
                let mut sink = std::io::BufWriter::with_capacity(64 * 1024, CountingSink(0));
                for (f, data) in corpus {
                    let r = convert_bytes(f, data, &opts, None);
                    write_ndjson(&mut sink, &r.resources);
                }
                let _ = sink.flush();
                black_box(sink.get_ref().0)
            })
        });
    }
    g.throughput(Throughput::Elements(19 * 50));
    g.bench_function("c_synth_render_50_patients", |b| {
        let s = Synthesizer::new(1);
        b.iter(|| (0..50).map(|i| s.patient_files(i).1.len()).sum::<usize>())
    });
    g.finish();
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// One timed pass of (a) and (b) over an on-disk storage.
fn corpus_run(root: &str) {
    let opts = ConvertOptions::default();
    // Warm the page cache so both passes read from memory.
    let mut files = 0u64;
    let mut bytes = 0u64;
    for p in ssmix2::walk_patients(root).flatten() {
        for f in &p.files {
            bytes += std::fs::read(&f.path).map(|b| b.len() as u64).unwrap_or(0);
            files += 1;
        }
    }
    let rss_after_warm = peak_rss_kib();

    // (w) walk only and (r) walk + read: what the storage layout itself costs (one directory per
    // data type and date: about one directory open per file).
    let t = Instant::now();
    let walked: usize = ssmix2::walk_patients(root).flatten().map(|p| black_box(p.files.len())).sum();
    let tw = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut read_bytes = 0u64;
    for p in ssmix2::walk_patients(root).flatten() {
        for f in &p.files {
            read_bytes += std::fs::read(&f.path).map(|b| b.len() as u64).unwrap_or(0);
        }
    }
    let tr = t.elapsed().as_secs_f64();

    // (a) walk + read + decode/parse: the ceiling.
    let t = Instant::now();
    let mut parsed = 0u64;
    for p in ssmix2::walk_patients(root).flatten() {
        for f in &p.files {
            if let Ok(data) = std::fs::read(&f.path) {
                if let Ok(m) = Message::parse(&data, &DecodeOptions::default()) {
                    parsed += black_box(m.len()).min(1) as u64;
                }
            }
        }
    }
    let ta = t.elapsed().as_secs_f64();

    // (b) full conversion as the `convert` command does it, NDJSON to a byte-counting sink.
    let t = Instant::now();
    let mut sink = std::io::BufWriter::with_capacity(256 * 1024, CountingSink(0));
    let (mut converted, mut failed, mut resources) = (0u64, 0u64, 0u64);
    for p in ssmix2::walk_patients(root).flatten() {
        for r in convert_patient(&p, &opts) {
            match r.status {
                FileStatus::Failed(_) => failed += 1,
                _ => converted += 1,
            }
            resources += r.resources.len() as u64;
            write_ndjson(&mut sink, &r.resources);
        }
    }
    let _ = sink.flush();
    let tb = t.elapsed().as_secs_f64();
    let out_bytes = sink.get_ref().0;

    let mb = bytes as f64 / 1e6;
    println!("corpus: {files} files, {mb:.1} MB");
    println!("(w) walk only:              {:.0} files/s ({walked} files, {tw:.3} s)", walked as f64 / tw);
    println!(
        "(r) walk+read:              {:.0} files/s, {:.1} MB/s ({tr:.3} s)",
        files as f64 / tr,
        read_bytes as f64 / 1e6 / tr
    );
    println!(
        "(a) walk+read+decode+parse: {:.0} files/s, {:.1} MB/s ({parsed} parsed, {ta:.3} s)",
        files as f64 / ta,
        mb / ta
    );
    println!(
        "(b) full conversion:        {:.0} files/s, {:.1} MB/s ({converted} ok, {failed} failed, {resources} resources, {:.1} MB NDJSON, {tb:.3} s)",
        files as f64 / tb,
        mb / tb,
        out_bytes as f64 / 1e6
    );
    println!("ratio (b)/(a): {:.1} %", 100.0 * ta / tb);
    println!("peak RSS: {} KiB after warm-up walk, {} KiB at end", rss_after_warm, peak_rss_kib());
}

fn main() {
    if let Ok(root) = std::env::var("CONVERT_CORPUS") {
        corpus_run(&root);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
