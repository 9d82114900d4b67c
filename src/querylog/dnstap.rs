//! dnstap output: every recorded query as a CLIENT_QUERY and a CLIENT_RESPONSE message
//! (protobuf, encoded here by hand: a few varint, fixed32 and length-delimited fields of the
//! public dnstap.proto schema), sent over a Frame Streams connection (the bidirectional
//! handshake: READY, ACCEPT, START with content type `protobuf:dnstap.Dnstap`, then data
//! frames, STOP and FINISH at the end) to a Unix or TCP socket.
//!
//! The sender is a thread of its own behind a bounded queue: a collector that is away or slow
//! costs dropped frames (counted), never a blocked writer or query. It reconnects with backoff
//! (1 s, doubling up to 30 s).

use std::{
    io::{BufWriter, Read, Write},
    net::{IpAddr, TcpStream},
    os::unix::net::UnixStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use prometheus::IntCounter;
use tracing::{info, warn};

use super::{Entry, LogMetrics, Transport};
use crate::config::DnstapTarget;

pub const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";

/// Frame Streams control frame types.
const CONTROL_ACCEPT: u32 = 1;
const CONTROL_START: u32 = 2;
const CONTROL_STOP: u32 = 3;
const CONTROL_READY: u32 = 4;
const CONTROL_FINISH: u32 = 5;
/// The control field carrying a content type.
const FIELD_CONTENT_TYPE: u32 = 1;

/// dnstap.proto: Dnstap.Type MESSAGE, Message.Type CLIENT_QUERY / CLIENT_RESPONSE.
const DNSTAP_MESSAGE: u64 = 1;
pub const CLIENT_QUERY: u64 = 5;
pub const CLIENT_RESPONSE: u64 = 6;

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The writer's side: encodes entries and queues frames for the sender thread.
pub struct Sender {
    tx: SyncSender<Vec<u8>>,
    dropped: IntCounter,
}

impl Sender {
    pub fn start(
        target: DnstapTarget,
        queue: usize,
        metrics: LogMetrics,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(2));
        let dropped = metrics.dropped.with_label_values(&["dnstap"]);
        let connection = Connection {
            target,
            written: metrics.written.with_label_values(&["dnstap"]),
            dropped: dropped.clone(),
            errors: metrics.errors.with_label_values(&["dnstap"]),
        };
        let thread = std::thread::Builder::new()
            .name("rampart-dnstap".into())
            .spawn(move || connection.run(rx, stop))?;
        Ok((Self { tx, dropped }, thread))
    }

    /// Queue the two messages of `entry`, with the client address (and port) as privacy
    /// allows.
    pub fn send(&self, entry: &Entry, address: Option<IpAddr>, port: Option<u16>) {
        for kind in [CLIENT_QUERY, CLIENT_RESPONSE] {
            let frame = encode(entry, kind, address, port);
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                self.tx.try_send(frame)
            {
                self.dropped.inc();
            }
        }
    }
}

/// One dnstap message (a `Dnstap` protobuf) for `entry`.
pub fn encode(entry: &Entry, kind: u64, address: Option<IpAddr>, port: Option<u16>) -> Vec<u8> {
    let mut m = Vec::with_capacity(128 + entry.query().len());
    varint_field(&mut m, 1, kind);
    let family = match address.unwrap_or(entry.client.ip()) {
        IpAddr::V4(_) => 1,
        IpAddr::V6(_) => 2,
    };
    varint_field(&mut m, 2, family);
    let protocol = match entry.transport {
        Transport::Udp => 1,
        Transport::Tcp => 2,
        Transport::Tls => 3,
        Transport::Https => 4,
    };
    varint_field(&mut m, 3, protocol);
    if let Some(ip) = address {
        match ip {
            IpAddr::V4(v4) => bytes_field(&mut m, 4, &v4.octets()),
            IpAddr::V6(v6) => bytes_field(&mut m, 4, &v6.octets()),
        }
        if let Some(port) = port {
            varint_field(&mut m, 6, u64::from(port));
        }
    }
    let (sec, nsec) = split(entry.time_ns);
    varint_field(&mut m, 8, sec);
    fixed32_field(&mut m, 9, nsec);
    if kind == CLIENT_QUERY {
        bytes_field(&mut m, 10, entry.query());
    } else {
        let (sec, nsec) = split(entry.time_ns + u64::from(entry.elapsed_us) * 1000);
        varint_field(&mut m, 12, sec);
        fixed32_field(&mut m, 13, nsec);
        if let Some(response) = &entry.response {
            bytes_field(&mut m, 14, response);
        }
    }
    let mut d = Vec::with_capacity(m.len() + 40);
    bytes_field(&mut d, 1, b"rampart");
    bytes_field(
        &mut d,
        2,
        concat!("rampart ", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    bytes_field(&mut d, 14, &m);
    varint_field(&mut d, 15, DNSTAP_MESSAGE);
    d
}

fn split(ns: u64) -> (u64, u32) {
    (ns / 1_000_000_000, (ns % 1_000_000_000) as u32)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn fixed32_field(out: &mut Vec<u8>, field: u64, v: u32) {
    varint(out, (field << 3) | 5);
    out.extend_from_slice(&v.to_le_bytes());
}

fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A Frame Streams control frame: the escape (a zero length), the frame's length, its type,
/// and a content-type field unless `content_type` is empty.
pub fn control_frame(kind: u32, content_type: &[u8]) -> Vec<u8> {
    let mut body = kind.to_be_bytes().to_vec();
    if !content_type.is_empty() {
        body.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        body.extend_from_slice(&(content_type.len() as u32).to_be_bytes());
        body.extend_from_slice(content_type);
    }
    let mut frame = 0u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Read one control frame; its type.
fn read_control(stream: &mut dyn Read) -> std::io::Result<u32> {
    let mut word = [0u8; 4];
    stream.read_exact(&mut word)?;
    if word != [0; 4] {
        return Err(std::io::Error::other("expected a control frame"));
    }
    stream.read_exact(&mut word)?;
    let len = u32::from_be_bytes(word) as usize;
    if !(4..=512).contains(&len) {
        return Err(std::io::Error::other(
            "control frame of an impossible length",
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok(u32::from_be_bytes([body[0], body[1], body[2], body[3]]))
}

trait Stream: Read + Write + Send {
    fn timeouts(&self, d: Option<Duration>) -> std::io::Result<()>;
}

impl Stream for UnixStream {
    fn timeouts(&self, d: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(d)?;
        self.set_write_timeout(d)
    }
}

impl Stream for TcpStream {
    fn timeouts(&self, d: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(d)?;
        self.set_write_timeout(d)
    }
}

struct Connection {
    target: DnstapTarget,
    written: IntCounter,
    dropped: IntCounter,
    errors: IntCounter,
}

impl Connection {
    fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        let mut stream: Box<dyn Stream> = match &self.target {
            DnstapTarget::Unix(path) => Box::new(UnixStream::connect(path)?),
            DnstapTarget::Tcp(addr) => {
                let s = TcpStream::connect_timeout(addr, IO_TIMEOUT)?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        };
        stream.timeouts(Some(IO_TIMEOUT))?;
        stream.write_all(&control_frame(CONTROL_READY, CONTENT_TYPE))?;
        if read_control(&mut stream)? != CONTROL_ACCEPT {
            return Err(std::io::Error::other("the collector did not ACCEPT"));
        }
        stream.write_all(&control_frame(CONTROL_START, CONTENT_TYPE))?;
        Ok(stream)
    }

    fn run(self, rx: Receiver<Vec<u8>>, stop: Arc<AtomicBool>) {
        let mut backoff = BACKOFF_MIN;
        let mut was_connected = true;
        while !stop.load(Ordering::Acquire) {
            match self.connect() {
                Ok(stream) => {
                    info!(collector = ?self.target, "dnstap collector connected");
                    was_connected = true;
                    backoff = BACKOFF_MIN;
                    match self.pump(stream, &rx, &stop) {
                        Ok(()) => return,
                        Err(e) => {
                            warn!(collector = ?self.target, error = %e, "dnstap collector lost");
                            self.errors.inc();
                        }
                    }
                }
                Err(e) => {
                    if was_connected {
                        warn!(collector = ?self.target, error = %e, "cannot reach the dnstap collector; retrying");
                    }
                    was_connected = false;
                    self.errors.inc();
                }
            }
            // Until the next try, frames have nowhere to go.
            let until = Instant::now() + backoff;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                    Ok(_) => self.dropped.inc(),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Send frames until an error, or until told to stop (then STOP / FINISH: Ok).
    fn pump(
        &self,
        stream: Box<dyn Stream>,
        rx: &Receiver<Vec<u8>>,
        stop: &AtomicBool,
    ) -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(256 << 10, stream);
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(frame) => Some(frame),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return self.finish(out),
            };
            for frame in first.into_iter().chain(rx.try_iter().take(4096)) {
                out.write_all(&(frame.len() as u32).to_be_bytes())?;
                out.write_all(&frame)?;
                self.written.inc();
            }
            out.flush()?;
            if stopping {
                for frame in rx.try_iter() {
                    out.write_all(&(frame.len() as u32).to_be_bytes())?;
                    out.write_all(&frame)?;
                    self.written.inc();
                }
                return self.finish(out);
            }
        }
    }

    fn finish(&self, mut out: BufWriter<Box<dyn Stream>>) -> std::io::Result<()> {
        out.write_all(&control_frame(CONTROL_STOP, b""))?;
        out.flush()?;
        let mut stream = out.into_inner().map_err(|e| e.into_error())?;
        stream.timeouts(Some(Duration::from_secs(1)))?;
        // The collector answers FINISH; it does not matter if it does not.
        let _ = read_control(&mut stream).map(|t| t == CONTROL_FINISH);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_fields_encode_as_protobuf_does() {
        let mut v = Vec::new();
        varint(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
        let mut f = Vec::new();
        varint_field(&mut f, 15, 1);
        assert_eq!(f, [120, 1]);
        let mut f = Vec::new();
        fixed32_field(&mut f, 9, 1);
        assert_eq!(f, [77, 1, 0, 0, 0]);
        let mut f = Vec::new();
        bytes_field(&mut f, 14, &[9; 3]);
        assert_eq!(f, [114, 3, 9, 9, 9]);
    }

    #[test]
    fn control_frames_are_escaped_and_sized() {
        let f = control_frame(CONTROL_READY, CONTENT_TYPE);
        assert_eq!(&f[..4], &[0; 4]);
        assert_eq!(
            u32::from_be_bytes(f[4..8].try_into().unwrap()) as usize,
            f.len() - 8
        );
        assert_eq!(&f[8..12], &CONTROL_READY.to_be_bytes());
        assert_eq!(&f[20..], CONTENT_TYPE);
        assert_eq!(read_control(&mut &f[..]).unwrap(), CONTROL_READY);
        assert_eq!(control_frame(CONTROL_STOP, b"").len(), 12);
    }
}
