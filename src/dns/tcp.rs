//! DNS over TCP (RFC 7766), through the same pipeline as the UDP general path.
//!
//! Each message is framed by a two-byte length. Pipelined queries of one connection are
//! answered concurrently (at most `tcp.max_in_flight_per_connection` at once; the next is read
//! when one is done) and their responses written as they are ready, in any order. Limits:
//! connections in all and per client address (more are closed at once), queries per
//! connection (then it is closed after the last answer), idle time (`server.tcp_idle_timeout`,
//! with nothing being answered) and time to finish a started message. Access control is
//! checked on accept and for every query, so a reload applies to open connections too.
//!
//! Stopping: when the token is cancelled, listeners stop accepting and every connection stops
//! reading, writes the answers of the queries it has read, and closes.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use hickory_server::net::xfer::Protocol;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::WriteHalf},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{handler::DnsHandler, limits::short_reply};
use crate::config::{DenyAction, TcpConfig};

/// Longest DNS message over TCP, with its length prefix.
const FRAME_MAX: usize = 2 + u16::MAX as usize;
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 4096;
/// Longest wait for the client to close after we have (see the end of `Connection::run`).
const LINGER: Duration = Duration::from_secs(1);

/// Open connections, in all and per client address.
#[derive(Debug, Default)]
struct Connections {
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; its slot is given back on drop.
struct Slot {
    connections: Arc<Connections>,
    client: IpAddr,
    handler: Arc<DnsHandler>,
}

impl Connections {
    /// Take a slot for a connection from `client`, or the reason it may not have one.
    fn admit(
        self: &Arc<Self>,
        client: IpAddr,
        limits: &TcpConfig,
        handler: &Arc<DnsHandler>,
    ) -> Result<Slot, &'static str> {
        let mut map = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let total = handler.metrics.tcp_connections.get();
        if total >= i64::try_from(limits.max_connections).unwrap_or(i64::MAX) {
            return Err("total");
        }
        let n = map.entry(client).or_default();
        if *n >= limits.max_connections_per_client {
            return Err("per_client");
        }
        *n += 1;
        handler.metrics.tcp_connections.inc();
        Ok(Slot {
            connections: self.clone(),
            client,
            handler: handler.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .connections
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.client);
            }
        }
        self.handler.metrics.tcp_connections.dec();
    }
}

/// Serve DNS over TCP on `listeners` until `token` is cancelled and the open connections have
/// finished their queries.
pub async fn serve(
    listeners: Vec<TcpListener>,
    handler: Arc<DnsHandler>,
    idle_timeout: Duration,
    token: CancellationToken,
) {
    let connections = Arc::new(Connections::default());
    let mut accepting = JoinSet::new();
    for listener in listeners {
        accepting.spawn(accept_loop(
            listener,
            handler.clone(),
            connections.clone(),
            idle_timeout,
            token.clone(),
        ));
    }
    while accepting.join_next().await.is_some() {}
}

async fn accept_loop(
    listener: TcpListener,
    handler: Arc<DnsHandler>,
    connections: Arc<Connections>,
    idle_timeout: Duration,
    token: CancellationToken,
) {
    let mut open = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => break,
            Some(_) = open.join_next(), if !open.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let rejected = |reason| {
            handler
                .metrics
                .tcp_rejected
                .with_label_values(&[reason])
                .inc();
        };
        let client = peer.ip().to_canonical();
        if handler.limits.denied(client) == Some(DenyAction::Drop) {
            handler.limits.count_denied("tcp", DenyAction::Drop);
            rejected("access");
            continue;
        }
        let limits = handler.limits.tcp();
        let slot = match connections.admit(client, &limits, &handler) {
            Ok(slot) => slot,
            Err(reason) => {
                debug!(client = %peer, reason, "TCP connection rejected");
                rejected(reason);
                continue;
            }
        };
        let handler = handler.clone();
        let token = token.clone();
        open.spawn(async move {
            let _ = stream.set_nodelay(true);
            let reason = Connection {
                handler: handler.clone(),
                peer,
                limits,
                idle_timeout,
            }
            .run(stream, token)
            .await;
            handler
                .metrics
                .tcp_closed
                .with_label_values(&[reason])
                .inc();
            drop(slot);
        });
    }
    drop(listener);
    // Stopping: the connections finish what they have read.
    while open.join_next().await.is_some() {}
}

/// What woke a connection up.
enum Event {
    Answered(Option<Vec<u8>>),
    Read(std::io::Result<usize>),
    Stop,
    Timeout,
}

struct Connection {
    handler: Arc<DnsHandler>,
    peer: SocketAddr,
    limits: Arc<TcpConfig>,
    idle_timeout: Duration,
}

impl Connection {
    /// Serve one connection; returns why it ended (the `rampart_tcp_closed_total` reason).
    async fn run(self, mut stream: TcpStream, token: CancellationToken) -> &'static str {
        let (mut rd, mut wr) = stream.split();
        let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
        let mut in_flight: JoinSet<Option<Vec<u8>>> = JoinSet::new();
        let max_in_flight = self.limits.max_in_flight_per_connection;
        let mut queries = 0usize;
        // Why the connection stops reading (it ends once the answers are written).
        let mut stopped: Option<&'static str> = None;
        let mut last_activity = Instant::now();
        let mut message_started: Option<Instant> = None;
        loop {
            // Take every complete message there is room to answer.
            while stopped.is_none() && in_flight.len() < max_in_flight {
                let Some(message) = next_message(&mut buf) else {
                    break;
                };
                let Ok(message) = message else {
                    return "malformed";
                };
                queries += 1;
                match self.handler.limits.denied(self.peer.ip()) {
                    None => {
                        let (handler, peer) = (self.handler.clone(), self.peer);
                        in_flight.spawn(async move {
                            handler.answer_bytes(message, peer, Protocol::Tcp).await
                        });
                    }
                    Some(DenyAction::Refuse) => {
                        self.handler.limits.count_denied("tcp", DenyAction::Refuse);
                        let mut out = vec![0u8; message.len()];
                        let reply = short_reply(&message, 5, false, &mut out).map(|n| {
                            out.truncate(n);
                            out
                        });
                        in_flight.spawn(std::future::ready(reply));
                    }
                    Some(DenyAction::Drop) => {
                        self.handler.limits.count_denied("tcp", DenyAction::Drop);
                        return "denied";
                    }
                }
                let max = self.limits.max_queries_per_connection;
                if max != 0 && queries >= max {
                    stopped = Some("query_limit");
                }
            }
            if buf.is_empty() {
                message_started = None;
            }
            if stopped.is_some() && in_flight.is_empty() {
                break;
            }
            // Nothing being answered: the client must send within the idle timeout, and
            // finish a message it has started within the message timeout.
            let deadline = match (in_flight.is_empty(), message_started) {
                (false, _) => None,
                (true, Some(started)) => Some(started + self.limits.message_timeout),
                (true, None) => Some(last_activity + self.idle_timeout),
            };
            let can_read = stopped.is_none() && in_flight.len() < max_in_flight;
            if can_read && buf.capacity() - buf.len() < READ_CHUNK {
                buf.reserve(READ_CHUNK);
            }
            let event = tokio::select! {
                biased;
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    Event::Answered(done.ok().flatten())
                }
                _ = token.cancelled(), if stopped.is_none() => Event::Stop,
                read = rd.read_buf(&mut buf), if can_read => Event::Read(read),
                _ = sleep_until(deadline), if can_read && deadline.is_some() => Event::Timeout,
            };
            match event {
                Event::Answered(None) => {}
                Event::Answered(Some(response)) => {
                    if !write_message(&mut wr, &response, self.idle_timeout).await {
                        return "write";
                    }
                    last_activity = Instant::now();
                }
                Event::Stop => stopped = Some("shutdown"),
                Event::Read(Ok(0)) | Event::Read(Err(_)) => stopped = Some("client"),
                Event::Read(Ok(_)) => {
                    last_activity = Instant::now();
                    message_started.get_or_insert(last_activity);
                }
                Event::Timeout => {
                    return if message_started.is_some() {
                        "incomplete"
                    } else {
                        "idle"
                    };
                }
            }
        }
        // Close our side, then read and discard what the client still sends until it closes
        // too (briefly): closing with unread data would reset the connection, and a reset can
        // cost the client the answers it has not read yet.
        let _ = tokio::time::timeout(self.idle_timeout, wr.shutdown()).await;
        let _ = tokio::time::timeout(LINGER.min(self.idle_timeout), async {
            let mut sink = [0u8; 1024];
            while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        stopped.unwrap_or("client")
    }
}

/// The next complete message in `buf` (removed from it), `None` if there is none yet, or an
/// error for a zero-length frame.
fn next_message(buf: &mut Vec<u8>) -> Option<Result<Vec<u8>, ()>> {
    let len = usize::from(u16::from_be_bytes([*buf.first()?, *buf.get(1)?]));
    if len == 0 {
        return Some(Err(()));
    }
    if buf.len() < 2 + len {
        return None;
    }
    debug_assert!(2 + len <= FRAME_MAX);
    let message = buf[2..2 + len].to_vec();
    buf.drain(..2 + len);
    Some(Ok(message))
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

/// Write one framed message within `timeout`; false if that failed.
async fn write_message(wr: &mut WriteHalf<'_>, message: &[u8], timeout: Duration) -> bool {
    let Ok(len) = u16::try_from(message.len()) else {
        return false;
    };
    let mut framed = Vec::with_capacity(2 + message.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    matches!(
        tokio::time::timeout(timeout, wr.write_all(&framed)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_from_the_stream() {
        let mut buf = vec![0, 2, 0xaa, 0xbb, 0, 1, 0xcc, 0];
        assert_eq!(next_message(&mut buf), Some(Ok(vec![0xaa, 0xbb])));
        assert_eq!(next_message(&mut buf), Some(Ok(vec![0xcc])));
        assert_eq!(next_message(&mut buf), None);
        buf.push(3);
        assert_eq!(next_message(&mut buf), None);
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(next_message(&mut buf), Some(Ok(vec![1, 2, 3])));
        assert!(buf.is_empty());
        assert_eq!(next_message(&mut vec![0, 0]), Some(Err(())));
    }
}
