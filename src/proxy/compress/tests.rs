use super::stream::{brotli_window_bits, gzip_window_bits};
use super::{Compressing, Encoder};
use crate::config::{Compression, Encoding};
use bytes::Bytes;
use hyper::body::Frame;
use std::collections::VecDeque;
use std::io::Read;
use std::task::Poll;

/// The defaults a route's `compress` gets.
fn defaults() -> Compression {
    Compression {
        encodings: vec![Encoding::Zstd, Encoding::Brotli, Encoding::Gzip],
        min_bytes: Compression::DEFAULT_MIN_BYTES,
        types: vec!["application/json".into()],
        levels: Compression::DEFAULT_LEVELS,
    }
}

fn counters() -> (metrics::Counter, metrics::Counter) {
    (metrics::Counter::noop(), metrics::Counter::noop())
}

/// What a body yields: data, a stall, or its end.
enum Step {
    Data(&'static [u8]),
    Stall,
}

/// Polls `compressing` over `steps` (then the end) until the end, collecting what each poll
/// gives: `Some(bytes)` for a data frame, `None` for `Pending`.
fn run(mut compressing: Compressing, steps: Vec<Step>) -> Vec<Option<Bytes>> {
    let mut steps: VecDeque<Step> = steps.into();
    let mut out = Vec::new();
    loop {
        let polled = compressing.poll(|| match steps.pop_front() {
            Some(Step::Data(data)) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(data))))),
            Some(Step::Stall) => Poll::Pending,
            None => Poll::Ready(None),
        });
        match polled {
            Poll::Ready(Some(Ok(frame))) => out.push(Some(frame.into_data().unwrap())),
            Poll::Ready(None) => return out,
            Poll::Ready(Some(Err(e))) => panic!("{e}"),
            Poll::Pending => out.push(None),
        }
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

fn gzip() -> Encoder {
    Encoder::new(Encoding::Gzip, &defaults(), None).unwrap()
}

#[test]
fn a_body_ready_at_once_is_compressed_without_a_flush() {
    let frames = run(
        Compressing::new(gzip(), counters()),
        vec![Step::Data(b"hello, "), Step::Data(b"world")],
    );
    // The two chunks and the end in one go: the only frame is the finished stream.
    assert_eq!(frames.len(), 1);
    assert_eq!(gunzip(frames[0].as_ref().unwrap()), b"hello, world");
}

#[test]
fn a_stall_flushes_what_came_before_it_once() {
    let frames = run(
        Compressing::new(gzip(), counters()),
        vec![
            Step::Data(b"data: one\n\n"),
            Step::Stall,
            Step::Stall,
            Step::Data(b"data: two\n\n"),
        ],
    );
    // The first stall sends the first event, decodable on its own; the second has nothing new.
    assert!(frames[0].is_some());
    assert_eq!(frames[1], None);
    let first = frames[0].clone().unwrap();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    std::io::Write::write_all(&mut decoder, &first).unwrap();
    std::io::Write::flush(&mut decoder).unwrap();
    assert_eq!(decoder.get_ref().as_slice(), b"data: one\n\n");
    let all: Vec<u8> = frames.into_iter().flatten().flatten().collect();
    assert_eq!(gunzip(&all), b"data: one\n\ndata: two\n\n");
}

#[test]
fn a_long_burst_is_sent_in_pieces_rather_than_whole() {
    static CHUNK: [u8; 16 * 1024] = [b'x'; 16 * 1024];
    let steps = (0..16).map(|_| Step::Data(&CHUNK)).collect();
    let frames = run(Compressing::new(gzip(), counters()), steps);
    // 256 KiB of input: flushed every 64 KiB, then the end.
    assert!(frames.len() >= 4, "{} frames", frames.len());
    let all: Vec<u8> = frames.into_iter().flatten().flatten().collect();
    assert_eq!(gunzip(&all).len(), 256 * 1024);
}

#[test]
fn every_codec_decodes_whether_or_not_the_length_is_declared() {
    let body = b"{\"items\": [1, 2, 3]} ".repeat(600);
    for encoding in [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd] {
        for length in [None, Some(body.len() as u64)] {
            let encoder = Encoder::new(encoding, &defaults(), length).unwrap();
            let (first, rest) = body.split_at(5000);
            // Leaked: the steps take static data, as a test's bodies may.
            let first: &'static [u8] = Box::leak(first.to_vec().into_boxed_slice());
            let rest: &'static [u8] = Box::leak(rest.to_vec().into_boxed_slice());
            let frames = run(
                Compressing::new(encoder, counters()),
                vec![Step::Data(first), Step::Stall, Step::Data(rest)],
            );
            let all: Vec<u8> = frames.into_iter().flatten().flatten().collect();
            let mut plain = Vec::new();
            match encoding {
                Encoding::Gzip => plain = gunzip(&all),
                Encoding::Brotli => {
                    brotli::Decompressor::new(all.as_slice(), 4096)
                        .read_to_end(&mut plain)
                        .unwrap();
                }
                Encoding::Zstd => plain = zstd::decode_all(all.as_slice()).unwrap(),
            }
            assert_eq!(plain, body, "{encoding:?} with length {length:?}");
        }
    }
}

#[test]
fn windows_are_sized_to_the_declared_length() {
    assert_eq!(gzip_window_bits(None), 15);
    assert_eq!(gzip_window_bits(Some(1 << 20)), 15);
    // 11,971 bytes (the benchmark's JSON) fit a 16 KiB window, as NGINX picks.
    assert_eq!(gzip_window_bits(Some(11_971)), 14);
    assert_eq!(gzip_window_bits(Some(100)), 9);
    assert_eq!(brotli_window_bits(None), 22);
    assert_eq!(brotli_window_bits(Some(11_971)), 14);
    assert_eq!(brotli_window_bits(Some(100)), 10);
    assert_eq!(brotli_window_bits(Some(u64::MAX)), 22);
}
