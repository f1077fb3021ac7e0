//! Compressing a body as it streams: the codecs behind one encoder type, and the body
//! wrapper that feeds it and decides when to flush.

use crate::config::{Compression, Encoding};
use bytes::Bytes;
use hyper::body::Frame;
use std::io::Write;
use std::task::Poll;

/// A streaming encoder writing to memory; what it has made so far is taken with
/// [`Encoder::take`] (as it comes) or [`Encoder::flush`] (decodable up to here).
pub enum Encoder {
    /// `gzip` (a zlib stream in gzip mode, so its window can be sized to the response).
    Gzip(flate2::write::ZlibEncoder<Vec<u8>>),
    /// `br`.
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    /// `zstd`.
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gzip(_) => "Encoder(gzip)",
            Self::Brotli(_) => "Encoder(br)",
            Self::Zstd(_) => "Encoder(zstd)",
        })
    }
}

/// The deflate window for a body of `length` bytes: the smallest that still reaches back over
/// all of it (NGINX's rule), so a small response does not pay for a 32 KiB window.
pub(super) fn gzip_window_bits(length: Option<u64>) -> u8 {
    let mut bits = 15u8;
    if let Some(length) = length {
        while bits > 9 && length < (1u64 << (bits - 1)) - 262 {
            bits -= 1;
        }
    }
    bits
}

/// The Brotli window for a body of `length` bytes: the smallest that holds all of it, up to
/// the 4 MiB the default gives a body of unknown length.
pub(super) fn brotli_window_bits(length: Option<u64>) -> i32 {
    let Some(length) = length else { return 22 };
    let mut bits = 10;
    while bits < 22 && (1u64 << bits) - 16 < length {
        bits += 1;
    }
    bits
}

impl Encoder {
    /// An encoder for `encoding` at the route's level, for a body of `length` bytes when the
    /// response declares it (each codec then sizes its window and tables to it).
    pub fn new(
        encoding: Encoding,
        compression: &Compression,
        length: Option<u64>,
    ) -> std::io::Result<Self> {
        let level = compression.level(encoding);
        Ok(match encoding {
            Encoding::Gzip => Self::Gzip(flate2::write::ZlibEncoder::new_with_compress(
                Vec::new(),
                flate2::Compress::new_gzip(
                    flate2::Compression::new(level),
                    gzip_window_bits(length),
                ),
            )),
            Encoding::Brotli => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: i32::try_from(level).unwrap_or(4),
                    lgwin: brotli_window_bits(length),
                    size_hint: length.map_or(0, |l| usize::try_from(l).unwrap_or(usize::MAX)),
                    ..Default::default()
                };
                Self::Brotli(Box::new(brotli::CompressorWriter::with_params(
                    Vec::new(),
                    4096,
                    &params,
                )))
            }
            Encoding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(
                    Vec::new(),
                    i32::try_from(level).unwrap_or(3),
                )?;
                // A known size lets zstd pick parameters for it; a body that then comes out
                // shorter or longer fails at the end, and the response is cut, as it would be.
                encoder.set_pledged_src_size(length)?;
                Self::Zstd(encoder)
            }
        })
    }

    /// Compresses `data`; the output may stay in the encoder until taken or flushed.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Gzip(e) => e.write_all(data),
            Self::Brotli(e) => e.write_all(data),
            Self::Zstd(e) => e.write_all(data),
        }
    }

    /// How many compressed bytes wait to be taken.
    pub fn pending(&mut self) -> usize {
        match self {
            Self::Gzip(e) => e.get_ref().len(),
            Self::Brotli(e) => e.get_ref().len(),
            Self::Zstd(e) => e.get_ref().len(),
        }
    }

    /// The compressed bytes made so far (possibly none; not decodable to the end of the input).
    pub fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(match self {
            Self::Gzip(e) => e.get_mut(),
            Self::Brotli(e) => e.get_mut(),
            Self::Zstd(e) => e.get_mut(),
        }))
    }

    /// Flushes: what comes out, with what was made before, decodes up to the last input.
    pub fn flush(&mut self) -> std::io::Result<Bytes> {
        match self {
            Self::Gzip(e) => e.flush()?,
            Self::Brotli(e) => e.flush()?,
            Self::Zstd(e) => e.flush()?,
        }
        Ok(self.take())
    }

    /// Ends the stream: what remains to send.
    pub fn finish(self) -> std::io::Result<Bytes> {
        Ok(Bytes::from(match self {
            Self::Gzip(e) => e.finish()?,
            Self::Brotli(e) => e.into_inner(),
            Self::Zstd(e) => e.finish()?,
        }))
    }
}

/// Compressed bytes waiting past this many go out without a flush.
const SEND_AT: usize = 16 * 1024;
/// Input taken past this many without sending anything is flushed and sent, so a fast
/// backend's body streams rather than being compressed whole first.
const FLUSH_AFTER: usize = 64 * 1024;

/// A body being compressed: the encoder (until the end), its counters, and trailers held
/// back until the encoder's last bytes are out.
#[derive(Debug)]
pub struct Compressing {
    encoder: Option<Encoder>,
    counters: (metrics::Counter, metrics::Counter),
    trailers: Option<http::HeaderMap>,
    /// Input written since the encoder was last flushed.
    unflushed: usize,
}

/// A frame of a body, as `Body::poll_frame` returns it.
type Polled = Poll<Option<Result<Frame<Bytes>, hyper::Error>>>;

impl Compressing {
    /// Compresses with `encoder`, counting bytes in and out on `counters`.
    pub fn new(encoder: Encoder, counters: (metrics::Counter, metrics::Counter)) -> Self {
        Self {
            encoder: Some(encoder),
            counters,
            trailers: None,
            unflushed: 0,
        }
    }

    /// The next compressed frame, from the frames `inner` yields. Data is compressed as long
    /// as more is ready and flushed when the source stalls (so a stream's event goes out at
    /// once, while a body that arrives in a burst pays for one flush, not one per chunk); the
    /// end of the body becomes the encoder's last bytes, then the held trailers, then the end.
    pub fn poll(&mut self, mut inner: impl FnMut() -> Polled) -> Polled {
        loop {
            let Some(encoder) = &mut self.encoder else {
                return self.end();
            };
            let frame = match inner() {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => return self.end(),
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Pending if self.unflushed == 0 => return Poll::Pending,
                Poll::Pending => {
                    // The source stalls: what was compressed so far goes out, decodable.
                    self.unflushed = 0;
                    return send(&self.counters.1, encoder.flush());
                }
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    // Trailers: the encoder's end goes first.
                    self.trailers = frame.into_trailers().ok();
                    return self.end();
                }
            };
            self.counters.0.increment(data.len() as u64);
            // An encoder writes to memory: it fails only out of memory. Sent as is then, the
            // client would get garbage: end the body instead.
            if encoder.write(&data).is_err() {
                return Poll::Ready(None);
            }
            self.unflushed += data.len();
            if self.unflushed >= FLUSH_AFTER {
                self.unflushed = 0;
                return send(&self.counters.1, encoder.flush());
            }
            if encoder.pending() >= SEND_AT {
                return send(&self.counters.1, Ok(encoder.take()));
            }
        }
    }

    /// The encoder's last bytes, once; then the held trailers; then the end.
    fn end(&mut self) -> Polled {
        match self.encoder.take() {
            Some(encoder) => send(&self.counters.1, encoder.finish()),
            None => Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }
}

/// `out` as the next data frame, counted on `bytes_out`; an encoder's failure ends the body.
fn send(bytes_out: &metrics::Counter, out: std::io::Result<Bytes>) -> Polled {
    match out {
        Ok(out) => {
            bytes_out.increment(out.len() as u64);
            Poll::Ready(Some(Ok(Frame::data(out))))
        }
        Err(_) => Poll::Ready(None),
    }
}
