//! A watch: one long response whose body is a stream of JSON messages. A thread reads the
//! body as it arrives and hands each decoded message over a channel, so that
//! [`WatchStream::next`] can wait with a timeout without a read timing out the connection.
//! Dropping the stream shuts its connection down, which ends the thread.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use ureq::Agent;

use super::transport::MAX_ANSWER;
use super::{wire, Error, WatchMessage};

/// Messages decoded ahead of the reader; the thread waits while this many are unread.
const QUEUE: usize = 16;

/// An open watch.
#[derive(Debug)]
pub struct WatchStream {
    /// The first message, read to learn whether etcd accepted the watch.
    first: Option<WatchMessage>,
    messages: Receiver<Result<WatchMessage, Error>>,
    /// The agent owning the connection, to shut it down on drop.
    agent: Agent,
}

impl WatchStream {
    /// Starts reading `body` on a thread, and waits up to `timeout` for the first message.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] when etcd canceled the watch for want of a valid token;
    /// [`Error::Canceled`] when it canceled it for another reason; [`Error::Timeout`] when
    /// nothing came in time; what reading failed with.
    pub(super) fn start(
        agent: Agent,
        body: impl Read + Send + 'static,
        transport_error: impl Fn(ureq::Error) -> Error + Send + 'static,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let (sender, messages) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("etcd-watch".into())
            .spawn(move || pump(body, &sender, &transport_error))
            .map_err(Error::Io)?;
        let mut stream = Self { first: None, messages, agent };
        match stream.next(timeout)? {
            None => Err(Error::Timeout("waiting for etcd to create the watch")),
            Some(WatchMessage::Canceled(reason)) => Err(canceled(&reason)),
            first => {
                stream.first = first;
                Ok(stream)
            }
        }
    }

    /// The next message, waiting up to `timeout`; `None` when none came in time.
    ///
    /// # Errors
    /// [`Error::Closed`] when the server ended the stream; I/O or protocol errors;
    /// [`Error::TooLarge`] for a message over [`MAX_ANSWER`] bytes. The stream is unusable
    /// afterwards: open a new one from the next revision.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<WatchMessage>, Error> {
        if let Some(first) = self.first.take() {
            return Ok(Some(first));
        }
        match self.messages.recv_timeout(timeout) {
            Ok(message) => message.map(Some),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(Error::Closed),
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        // Interrupts the thread's read; its next send fails and it returns.
        self.agent.clone().shutdown();
    }
}

/// The error for a watch etcd canceled as it was created: gRPC's `Unauthenticated` (an
/// expired or forgotten token) is worth signing in again for.
fn canceled(reason: &str) -> Error {
    // The gateway passes gRPC's text on: `rpc error: code = CODE desc = MESSAGE`.
    let message = reason.split_once(" desc = ").map_or(reason, |(_, message)| message);
    if reason.contains("code = Unauthenticated") {
        Error::Unauthenticated(message.to_owned())
    } else if wire::is_user_required(message) {
        Error::UserRequired(message.to_owned())
    } else {
        Error::Canceled(message.to_owned())
    }
}

/// Reads `body` and sends each message decoded from it, until the stream fails, a message
/// is too large, or the receiver is gone.
fn pump(
    mut body: impl Read,
    sender: &SyncSender<Result<WatchMessage, Error>>,
    transport_error: &impl Fn(ureq::Error) -> Error,
) {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = match body.read(&mut chunk) {
            Ok(0) => Err(Error::Closed),
            Ok(read) if buffer.len() + read > MAX_ANSWER => {
                Err(Error::TooLarge { limit: MAX_ANSWER })
            }
            Ok(read) => Ok(read),
            Err(e) => Err(transport_error(e.into())),
        };
        let read = match read {
            Ok(read) => read,
            Err(error) => {
                let _ = sender.send(Err(error));
                return;
            }
        };
        let new = &chunk[..read];
        buffer.extend_from_slice(new);
        // A message ends with `}` (and the gateway puts a newline after each); parsing only
        // then keeps a long message arriving in many reads from being parsed many times.
        if !new.iter().any(|&byte| byte == b'}' || byte == b'\n') {
            continue;
        }
        loop {
            let message = match wire::next_message(&mut buffer) {
                Ok(None) => break,
                Ok(Some(message)) => Ok(message),
                Err(error) => Err(error),
            };
            let failed = message.is_err();
            if sender.send(message).is_err() || failed {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn pumped(bytes: Vec<u8>) -> Vec<Result<WatchMessage, String>> {
        let (sender, receiver) = sync_channel(64);
        pump(Cursor::new(bytes), &sender, &Error::Http);
        drop(sender);
        receiver.iter().map(|message| message.map_err(|e| e.to_string())).collect()
    }

    #[test]
    fn messages_are_decoded_until_the_stream_ends() {
        let stream = b"{\"result\":{\"created\":true}}\n{\"result\":{\"canceled\":true,\
                       \"cancel_reason\":\"gone\"}}\n"
            .to_vec();
        assert_eq!(
            pumped(stream),
            [
                Ok(WatchMessage::Created),
                Ok(WatchMessage::Canceled("gone".into())),
                Err("the server closed the connection".into())
            ]
        );
    }

    #[test]
    fn a_message_larger_than_the_bound_is_refused_before_it_is_buffered() {
        let mut stream =
            b"{\"result\":{\"created\":true}}\n{\"result\":{\"cancel_reason\":\"".to_vec();
        stream.resize(MAX_ANSWER + 100_000, b'a');
        let messages = pumped(stream);
        assert_eq!(messages.len(), 2, "{:?}", &messages[1..]);
        assert_eq!(messages[0], Ok(WatchMessage::Created));
        assert_eq!(
            messages[1],
            Err(Error::TooLarge { limit: MAX_ANSWER }.to_string()),
            "the message is refused"
        );
    }

    #[test]
    fn cancel_reasons_lose_grpcs_wrapping() {
        let error =
            canceled("rpc error: code = Unauthenticated desc = etcdserver: invalid auth token");
        assert!(
            matches!(&error, Error::Unauthenticated(m) if m == "etcdserver: invalid auth token"),
            "{error:?}"
        );
        let error =
            canceled("rpc error: code = PermissionDenied desc = etcdserver: permission denied");
        assert!(matches!(&error, Error::Canceled(m) if m == "etcdserver: permission denied"));
    }
}
