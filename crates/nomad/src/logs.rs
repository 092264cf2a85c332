//! Reading Nomad's framed log stream (`GET /v1/client/fs/logs/:alloc`): [`FrameDecoder`] turns
//! body chunks into [`StreamFrame`]s, and [`LogStream`] is the stream of them a caller reads.
//!
//! The body is not NDJSON: it is JSON objects back to back with no separator, split across
//! chunks anywhere (inside a string, a number, a base64 run), with a `{}` heartbeat about every
//! second. The decoder keeps the unfinished tail between chunks and drops heartbeats. This
//! module must not make requests (the client does) nor interpret the log bytes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, Stream, StreamExt};

use crate::api::StreamFrame;
use crate::error::NomadError;

/// Most bytes kept waiting for a frame to end. Nomad's frames carry at most 64 KiB of data
/// (about 87 KiB of base64), so a longer run without a complete frame is not a log stream, and
/// reading on would only grow the buffer.
pub const MAX_PENDING_BYTES: usize = 1024 * 1024;

const WHAT: &str = "a log frame";

/// Decodes a framed log body pushed to it chunk by chunk.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    /// Bytes received but not yet part of a complete frame.
    pending: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Adds `chunk` and returns every frame it completed, in order, heartbeats left out.
    ///
    /// An error (a body that is not frames, undecodable base64, a frame over
    /// [`MAX_PENDING_BYTES`]) is final: the decoder drops what it held and the stream should end.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<StreamFrame>, NomadError> {
        self.pending.extend_from_slice(chunk);
        let mut frames = Vec::new();
        let mut consumed = 0;
        let mut values = serde_json::Deserializer::from_slice(&self.pending).into_iter::<StreamFrame>();
        loop {
            match values.next() {
                Some(Ok(frame)) => {
                    consumed = values.byte_offset();
                    if !frame.is_heartbeat() {
                        frames.push(frame);
                    }
                }
                // The rest is the start of a frame whose end has not arrived yet.
                Some(Err(error)) if error.is_eof() => break,
                Some(Err(error)) => {
                    self.pending.clear();
                    return Err(decode_error(error.to_string()));
                }
                // Only whitespace is left.
                None => {
                    consumed = values.byte_offset();
                    break;
                }
            }
        }
        self.pending.drain(..consumed);
        if self.pending.len() > MAX_PENDING_BYTES {
            self.pending.clear();
            return Err(decode_error(format!("no complete frame in {MAX_PENDING_BYTES} bytes")));
        }
        Ok(frames)
    }

    /// At the end of the body: an error if it stopped inside a frame.
    pub fn finish(&self) -> Result<(), NomadError> {
        if self.pending.iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else {
            Err(decode_error(format!("the stream ended inside a frame ({} bytes unfinished)", self.pending.len())))
        }
    }
}

fn decode_error(message: String) -> NomadError {
    NomadError::Decode { what: WHAT.to_owned(), message }
}

/// The frames of one log request, from [`crate::NomadClient::logs`]. It owns everything it needs
/// and is `Unpin`, so `.next().await` works directly.
///
/// It ends when Nomad closes the body (at the end of the current logs when not following). An
/// error is the last item: a broken connection, or silence longer than the client's timeout
/// (Nomad sends a heartbeat every second, so a live stream is never that quiet), is
/// [`NomadError::Unreachable`]; a body that is not frames is [`NomadError::Decode`].
pub struct LogStream(BoxStream<'static, Result<StreamFrame, NomadError>>);

impl Stream for LogStream {
    type Item = Result<StreamFrame, NomadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for LogStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogStream")
    }
}

impl LogStream {
    /// Frames from `chunks`, a response body. `idle` bounds the silence between chunks;
    /// `unreachable` builds the error for a broken or silent connection from a description.
    pub(crate) fn new(
        chunks: BoxStream<'static, reqwest::Result<Bytes>>,
        idle: Duration,
        unreachable: impl Fn(String) -> NomadError + Send + 'static,
    ) -> LogStream {
        let reading = Reading {
            chunks,
            decoder: FrameDecoder::new(),
            ready: VecDeque::new(),
            done: false,
            idle,
            unreachable: Box::new(unreachable),
        };
        LogStream(stream::unfold(reading, Reading::next).boxed())
    }
}

/// The state of a [`LogStream`] between items.
struct Reading {
    chunks: BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: FrameDecoder,
    /// Frames decoded from the last chunk, not yet handed out.
    ready: VecDeque<StreamFrame>,
    done: bool,
    idle: Duration,
    unreachable: Box<dyn Fn(String) -> NomadError + Send>,
}

impl Reading {
    async fn next(mut self) -> Option<(Result<StreamFrame, NomadError>, Reading)> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Some((Ok(frame), self));
            }
            if self.done {
                return None;
            }
            let chunk = match tokio::time::timeout(self.idle, self.chunks.next()).await {
                Ok(chunk) => chunk,
                Err(_) => {
                    let silence = format!("the log stream was silent for {:?}", self.idle);
                    let error = (self.unreachable)(silence);
                    return self.fail(error);
                }
            };
            match chunk {
                Some(Ok(chunk)) => match self.decoder.push(&chunk) {
                    Ok(frames) => self.ready.extend(frames),
                    Err(error) => return self.fail(error),
                },
                Some(Err(error)) => {
                    let broken = format!("the log stream broke off: {}", crate::client::describe_transport(&error));
                    let error = (self.unreachable)(broken);
                    return self.fail(error);
                }
                None => {
                    self.done = true;
                    if let Err(error) = self.decoder.finish() {
                        return Some((Err(error), self));
                    }
                }
            }
        }
    }

    fn fail(mut self, error: NomadError) -> Option<(Result<StreamFrame, NomadError>, Reading)> {
        self.done = true;
        self.ready.clear();
        Some((Err(error), self))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;
    use crate::api::FileEvent;

    fn data_frame(offset: i64, data: &[u8]) -> String {
        format!(r#"{{"Offset":{offset},"Data":"{}","File":"alloc/logs/build.stdout.0"}}"#, STANDARD.encode(data))
    }

    /// Feeds `body` in the given pieces and returns the frames and the end-of-body verdict.
    fn decode(pieces: &[&[u8]]) -> Result<Vec<StreamFrame>, NomadError> {
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for piece in pieces {
            frames.extend(decoder.push(piece)?);
        }
        decoder.finish()?;
        Ok(frames)
    }

    fn data_of(frames: &[StreamFrame]) -> Vec<u8> {
        frames.iter().flat_map(|frame| frame.data.iter().copied()).collect()
    }

    #[test]
    fn back_to_back_frames_with_heartbeats_between() {
        let body = format!("{{}}{}{{}}{{}}{}{{}}", data_frame(6, b"hello\n"), data_frame(12, b"world\n"));
        let frames = decode(&[body.as_bytes()]).unwrap();
        assert_eq!(frames.len(), 2, "heartbeats are dropped: {frames:?}");
        assert_eq!(frames[0].offset, 6);
        assert_eq!(frames[0].file, "alloc/logs/build.stdout.0");
        assert_eq!(&frames[0].data[..], b"hello\n");
        assert_eq!(data_of(&frames), b"hello\nworld\n");
    }

    #[test]
    fn a_split_at_every_byte_position_decodes_the_same() {
        let body = format!(
            "{{}}{}{{}}{}{{\"File\":\"alloc/logs/build.stdout.0\",\"FileEvent\":\"file truncated\"}}{{}}",
            data_frame(3, b"a\"b\xff\x00"),
            data_frame(1234567, "ünïcode ✓\n".as_bytes())
        );
        let whole = decode(&[body.as_bytes()]).unwrap();
        assert_eq!(whole.len(), 3);
        for at in 0..=body.len() {
            let (head, tail) = body.as_bytes().split_at(at);
            assert_eq!(decode(&[head, tail]).unwrap(), whole, "split at byte {at}");
        }
    }

    #[test]
    fn one_byte_chunks_decode_the_same() {
        let body = format!("{}{{}}{}", data_frame(1, b"x"), data_frame(2, b"y"));
        let pieces: Vec<&[u8]> = body.as_bytes().chunks(1).collect();
        assert_eq!(data_of(&decode(&pieces).unwrap()), b"xy");
    }

    #[test]
    fn a_data_frame_spanning_many_chunks() {
        // A full 64 KiB frame, as Nomad sends at most, cut into 1000-byte chunks.
        let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let body = format!("{{}}{}{{}}", data_frame(65536, &data));
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for chunk in body.as_bytes().chunks(1000) {
            let done = decoder.push(chunk).unwrap();
            assert!(frames.is_empty() || done.is_empty(), "one frame, handed out once");
            frames.extend(done);
        }
        decoder.finish().unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].data.len(), 65536);
        assert_eq!(&frames[0].data[..], &data[..]);
    }

    #[test]
    fn file_events_are_frames_not_heartbeats() {
        let body = r#"{"File":"alloc/logs/build.stdout.0","FileEvent":"file deleted"}{"Offset":0,"File":"alloc/logs/build.stdout.1","FileEvent":"file truncated"}{"FileEvent":"file renamed"}"#;
        let frames = decode(&[body.as_bytes()]).unwrap();
        let events: Vec<_> = frames.iter().map(|frame| frame.file_event.clone()).collect();
        assert_eq!(
            events,
            [Some(FileEvent::Deleted), Some(FileEvent::Truncated), Some(FileEvent::Other("file renamed".into()))]
        );
        assert!(frames.iter().all(|frame| frame.data.is_empty()));
    }

    #[test]
    fn whitespace_between_frames_is_fine() {
        let body = format!(" {}\n{{}}\r\n\t{} ", data_frame(1, b"a"), data_frame(2, b"b"));
        assert_eq!(data_of(&decode(&[body.as_bytes()]).unwrap()), b"ab");
    }

    #[test]
    fn a_body_that_ends_inside_a_frame_is_an_error() {
        let body = data_frame(1, b"abc");
        let error = decode(&[&body.as_bytes()[..body.len() - 2]]).unwrap_err();
        assert!(matches!(error, NomadError::Decode { .. }), "{error}");
        assert!(error.to_string().contains("ended inside a frame"), "{error}");
    }

    #[test]
    fn what_is_not_frames_is_an_error() {
        for body in [&b"not json"[..], b"[1,2]", br#"{"Data":"***"}"#, b"<html>"] {
            let error = decode(&[body]).unwrap_err();
            assert!(matches!(error, NomadError::Decode { .. }), "{body:?}: {error}");
        }
    }

    #[test]
    fn an_endless_frame_is_cut_off() {
        let mut decoder = FrameDecoder::new();
        let start = br#"{"Data":""#;
        decoder.push(start).unwrap();
        let filler = vec![b'A'; 64 * 1024];
        let mut failed = None;
        for _ in 0..(MAX_PENDING_BYTES / filler.len() + 2) {
            if let Err(error) = decoder.push(&filler) {
                failed = Some(error);
                break;
            }
        }
        let error = failed.expect("the decoder gives up past its limit");
        assert!(error.to_string().contains("no complete frame"), "{error}");
    }

    /// The decoder on generated bodies: valid frame streams and arbitrary bytes, each cut into
    /// chunks at arbitrary points.
    mod properties {
        use proptest::prelude::*;
        use proptest::sample::Index;

        use super::*;

        /// What a body is made of.
        #[derive(Clone, Debug)]
        enum Piece {
            Data(i64, Vec<u8>),
            Event(&'static str),
            Heartbeat,
            Space(&'static str),
        }

        fn piece() -> impl Strategy<Value = Piece> {
            prop_oneof![
                4 => (any::<i64>(), prop::collection::vec(any::<u8>(), 1..200)).prop_map(|(o, d)| Piece::Data(o, d)),
                1 => prop::sample::select(&["file truncated", "file deleted", "file renamed"][..]).prop_map(Piece::Event),
                2 => Just(Piece::Heartbeat),
                1 => prop::sample::select(&[" ", "\n", "\r\n", "\t "][..]).prop_map(Piece::Space),
            ]
        }

        fn body_of(pieces: &[Piece]) -> String {
            pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Data(offset, data) => data_frame(*offset, data),
                    Piece::Event(event) => format!(r#"{{"File":"alloc/logs/t.stdout.0","FileEvent":"{event}"}}"#),
                    Piece::Heartbeat => "{}".to_owned(),
                    Piece::Space(space) => (*space).to_owned(),
                })
                .collect()
        }

        /// `body` cut at the given points (in any order, repeats allowed).
        fn chunks<'a>(body: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
            at.extend([0, body.len()]);
            at.sort_unstable();
            at.dedup();
            at.windows(2).map(|w| &body[w[0]..w[1]]).collect()
        }

        /// A valid body with some bytes changed, inserted or removed.
        fn damaged() -> impl Strategy<Value = Vec<u8>> {
            let change = (any::<Index>(), any::<u8>(), 0..3u8);
            (prop::collection::vec(piece(), 0..6), prop::collection::vec(change, 1..4)).prop_map(|(pieces, changes)| {
                let mut body = body_of(&pieces).into_bytes();
                for (at, byte, how) in changes {
                    let i = at.index(body.len() + 1);
                    match how {
                        0 if i < body.len() => body[i] = byte,
                        1 if i < body.len() => {
                            body.remove(i);
                        }
                        _ => body.insert(i, byte),
                    }
                }
                body
            })
        }

        fn bytes() -> impl Strategy<Value = Vec<u8>> {
            let body = || prop::collection::vec(piece(), 0..6).prop_map(|pieces| body_of(&pieces).into_bytes());
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..256),
                body(),
                (body(), any::<Index>()).prop_map(|(mut body, at)| {
                    body.truncate(at.index(body.len() + 1));
                    body
                }),
                damaged(),
                prop::collection::vec(prop::sample::select(&b"{}[]\":,0123456789-eE.tfnrul \\/AZaz+="[..]), 0..64),
            ]
        }

        proptest! {
            #[test]
            fn frames_split_anywhere_decode_to_the_frames_sent(
                pieces in prop::collection::vec(piece(), 0..12), cuts in prop::collection::vec(any::<Index>(), 0..12),
            ) {
                let body = body_of(&pieces);
                let frames = decode(&chunks(body.as_bytes(), &cuts)).unwrap();
                let sent: Vec<u8> = pieces
                    .iter()
                    .flat_map(|p| match p {
                        Piece::Data(_, data) => data.clone(),
                        _ => Vec::new(),
                    })
                    .collect();
                let frames_sent = pieces.iter().filter(|p| matches!(p, Piece::Data(..) | Piece::Event(_))).count();
                prop_assert_eq!(frames.len(), frames_sent);
                prop_assert_eq!(data_of(&frames), sent);
                prop_assert_eq!(frames, decode(&[body.as_bytes()]).unwrap(), "the cuts change nothing");
            }

            /// Whatever the bytes, the decoder answers, and where the chunks were cut does not
            /// change its answer.
            #[test]
            fn any_bytes_cut_anywhere_decode_as_the_whole_body_does(
                body in bytes(), cuts in prop::collection::vec(any::<Index>(), 0..12),
            ) {
                let whole = decode(&[&body]);
                let cut = decode(&chunks(&body, &cuts));
                match (whole, cut) {
                    (Ok(whole), Ok(cut)) => prop_assert_eq!(whole, cut),
                    (Err(_), Err(error)) => prop_assert!(matches!(error, NomadError::Decode { .. }), "{error}"),
                    (whole, cut) => prop_assert!(false, "whole: {whole:?}, cut: {cut:?}"),
                }
            }
        }
    }
}
