//! A parser for `text/event-stream` (Server-Sent Events, as the HTML standard defines them):
//! bytes in, in whatever chunks the network delivers, whole [`SseEvent`]s out.
//!
//! It owns line splitting (`\r\n`, `\n` or a lone `\r`, even when a chunk ends between `\r`
//! and `\n`), UTF-8 decoding of whole lines (so a chunk may end inside a character), the
//! `event`, `data` and `id` fields, comments, and dispatch on a blank line. It must
//! not know what the events mean (that is [`crate::events`]) nor do any IO.

/// Longest line, and longest `data` of one event, that is buffered before giving up: far
/// above any event jobforge sends, low enough that a broken stream cannot eat the memory.
const MAX_BYTES: usize = 16 * 1024 * 1024;

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field; `message` when the event named none.
    pub event: String,
    /// Every `data:` line of the event, joined with `\n`.
    pub data: String,
    /// The last event id seen so far in the stream (it carries over to later events), if any.
    pub id: Option<String>,
}

/// A line or an event grew past [`MAX_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("the event stream has a line or an event over {} MiB", MAX_BYTES / (1024 * 1024))]
pub(crate) struct TooLong;

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next one belongs to it.
    skip_lf: bool,
    /// No line was processed yet (a byte order mark may open the stream).
    started: bool,
    event: String,
    data: String,
    /// The last event id buffer: it is not reset on dispatch.
    last_id: String,
}

impl SseParser {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the body and returns the events it completed, in order.
    ///
    /// At the end of the body, whatever was not dispatched by a blank line is dropped, as the
    /// standard says: there is nothing to call at the end.
    pub(crate) fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, TooLong> {
        let mut events = Vec::new();
        if self.skip_lf && !chunk.is_empty() {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&chunk[..end]);
            let was_cr = chunk[end] == b'\r';
            chunk = &chunk[end + 1..];
            if was_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.process(&line)? {
                events.push(event);
            }
        }
        self.line.extend_from_slice(chunk);
        if self.line.len() > MAX_BYTES {
            return Err(TooLong);
        }
        Ok(events)
    }

    /// Handles one complete line (without its terminator).
    fn process(&mut self, line: &[u8]) -> Result<Option<SseEvent>, TooLong> {
        let text = String::from_utf8_lossy(line);
        let mut text: &str = &text;
        if !self.started {
            self.started = true;
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        if text.is_empty() {
            return Ok(self.dispatch());
        }
        if text.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() > MAX_BYTES {
                    return Err(TooLong);
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            // An id holding NUL is ignored, as the standard says.
            "id" if !value.contains('\0') => value.clone_into(&mut self.last_id),
            // `retry` is the server's reconnection delay; the caller chooses its own backoff.
            _ => {}
        }
        Ok(None)
    }

    /// A blank line: the event so far is complete, unless it has no data.
    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return None;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop(); // the `\n` after the last data line
        Some(SseEvent {
            event: if event.is_empty() { "message".to_owned() } else { event },
            data,
            id: (!self.last_id.is_empty()).then(|| self.last_id.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent { event: name.to_owned(), data: data.to_owned(), id: id.map(str::to_owned) }
    }

    /// Parses `body` whole, then split at every possible byte position into two chunks, then
    /// byte by byte, and checks that every split gives `expected`.
    fn check(body: &[u8], expected: &[SseEvent]) {
        let whole = parse_chunks(&[body]);
        assert_eq!(whole, expected, "whole body");
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(parse_chunks(&[a, b]), expected, "split at byte {at}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(parse_chunks(&bytes), expected, "byte by byte");
    }

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        chunks.iter().flat_map(|chunk| parser.push(chunk).unwrap()).collect()
    }

    #[test]
    fn named_events_with_ids() {
        check(
            b"event: status\ndata: {\"a\":1}\n\nevent: log\nid: 7\ndata: {\"seq\":7}\n\n",
            &[event("status", "{\"a\":1}", None), event("log", "{\"seq\":7}", Some("7"))],
        );
    }

    #[test]
    fn every_line_ending_is_one_line_ending() {
        let expected = [event("log", "one", Some("1")), event("end", "two", Some("1"))];
        check(b"event: log\r\nid: 1\r\ndata: one\r\n\r\nevent: end\r\ndata: two\r\n\r\n", &expected);
        check(b"event: log\rid: 1\rdata: one\r\revent: end\rdata: two\r\r", &expected);
        check(b"event: log\nid: 1\r\ndata: one\r\revent: end\ndata: two\r\n\n", &expected);
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        check(
            b"data: first\ndata:second\ndata\ndata:  indented\n\n",
            &[event("message", "first\nsecond\n\n indented", None)],
        );
    }

    #[test]
    fn comments_and_unknown_fields_are_skipped() {
        check(
            b": keep-alive\n\n:another\nevent: log\n: in the middle\nfoo: bar\nretry: 10\ndata: x\n\n: keep-alive\n\n",
            &[event("log", "x", None)],
        );
    }

    #[test]
    fn multi_byte_characters_survive_any_split() {
        check(
            "event: log\ndata: {\"text\":\"héllo – 世界 🦀\"}\n\n".as_bytes(),
            &[event("log", "{\"text\":\"héllo – 世界 🦀\"}", None)],
        );
    }

    #[test]
    fn an_event_without_data_is_not_dispatched_and_its_name_does_not_leak() {
        check(b"event: status\n\ndata: plain\n\n", &[event("message", "plain", None)]);
    }

    #[test]
    fn the_last_event_id_carries_over_and_can_be_cleared() {
        check(
            b"id: 3\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n",
            &[
                event("message", "a", Some("3")),
                event("message", "b", Some("3")),
                event("message", "c", None),
                event("message", "d", None),
            ],
        );
    }

    #[test]
    fn an_unfinished_event_at_the_end_is_dropped() {
        check(b"event: log\ndata: complete\n\nevent: log\ndata: cut off\n", &[event("log", "complete", None)]);
    }

    #[test]
    fn a_byte_order_mark_opens_the_stream() {
        check("\u{feff}data: x\n\n".as_bytes(), &[event("message", "x", None)]);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = SseParser::new();
        let chunk = vec![b'x'; 1024 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..=MAX_BYTES / chunk.len() {
            result = parser.push(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
