//! UDP listeners. Each worker is an OS thread with its own `SO_REUSEPORT` socket per address
//! (the kernel spreads clients over them by address hash), reading batches with `recvmmsg`,
//! passing each datagram through the access and rate-limit gate (`limits::UdpGate`: REFUSED,
//! a slipped TC=1 answer, or nothing), answering what the fast path can into a batch sent with
//! one `sendmmsg`, and handing the rest to the general path on the tokio runtime, which
//! replies on the same socket.
//!
//! Blocking threads rather than async tasks: a worker that is busy has no use for a scheduler,
//! and one syscall per batch instead of two per packet is most of the fast path's gain (the
//! reflector in `../shared/bench` shows the ceiling of the pattern).

use std::{
    io::{IoSlice, IoSliceMut},
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg},
};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, warn};

use super::{
    fast::{Fast, FastPath},
    limits::{Admit, Tally},
};

/// Datagrams read per `recvmmsg`.
const BATCH: usize = 32;
/// Largest request read; longer ones are cut short by the kernel and dropped.
const REQUEST_MAX: usize = 4096;
/// How often a blocked worker wakes to see whether it should stop.
const WAKE: Duration = Duration::from_millis(200);
/// Most general-path queries in flight per worker; more are dropped (and counted) rather than
/// queued without bound.
const MAX_IN_FLIGHT: usize = 4096;

/// One UDP socket with SO_REUSEPORT and the given buffers, bound to `addr`.
fn reuseport_socket(addr: SocketAddr, buffer: usize) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // The kernel caps these at net.core.{r,w}mem_max; a smaller buffer is not an error.
    if let Err(e) = socket.set_recv_buffer_size(buffer) {
        debug!(error = %e, "cannot set the UDP receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer) {
        debug!(error = %e, "cannot set the UDP send buffer");
    }
    socket.set_read_timeout(Some(WAKE))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// `count` sockets on one address (port 0: the first picks the port, the others share it).
pub fn bind(addr: SocketAddr, count: usize, buffer: usize) -> std::io::Result<Vec<UdpSocket>> {
    let first = reuseport_socket(addr, buffer)?;
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count.max(1) {
        sockets.push(reuseport_socket(bound, buffer)?);
    }
    Ok(sockets)
}

/// Running UDP workers.
#[derive(Debug)]
pub struct Workers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    in_flight: Vec<Arc<AtomicUsize>>,
}

/// General-path queries still being answered after the workers stopped reading.
#[derive(Debug)]
pub struct InFlight(Vec<Arc<AtomicUsize>>);

impl InFlight {
    /// How many are left; their tasks still hold the socket and reply on it.
    pub fn count(&self) -> usize {
        self.0.iter().map(|c| c.load(Ordering::Acquire)).sum()
    }
}

impl Workers {
    /// Start one worker thread per socket.
    pub fn start(
        sockets: Vec<UdpSocket>,
        fast: Arc<FastPath>,
        use_fast_path: bool,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut in_flight = Vec::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            let worker = Worker {
                socket: Arc::new(socket),
                fast: fast.clone(),
                use_fast_path,
                runtime: runtime.clone(),
                stop: stop.clone(),
                in_flight: Arc::new(AtomicUsize::new(0)),
            };
            in_flight.push(worker.in_flight.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("rampart-udp-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(Self {
            stop,
            threads,
            in_flight,
        })
    }

    /// Ask the workers to stop reading and wait for them (at most one wake-up period). Queries
    /// already handed to the general path are still answered; the result counts them.
    pub fn stop(self) -> InFlight {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
        InFlight(self.in_flight)
    }
}

struct Worker {
    socket: Arc<UdpSocket>,
    fast: Arc<FastPath>,
    use_fast_path: bool,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    in_flight: Arc<AtomicUsize>,
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

impl Worker {
    fn run(self) {
        let fd = self.socket.as_raw_fd();
        let mut rx = vec![[0u8; REQUEST_MAX]; BATCH].into_boxed_slice();
        let out_size = usize::from(self.fast.handler().max_udp_payload).max(512);
        let mut tx: Vec<Vec<u8>> = (0..BATCH).map(|_| vec![0u8; out_size]).collect();
        let mut rx_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut tx_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut received: [(usize, Option<SocketAddr>); BATCH] = [(0, None); BATCH];
        let mut lens = [0usize; BATCH];
        let mut dests: [Option<SockaddrStorage>; BATCH] = [None; BATCH];
        let metrics = self.fast.handler().metrics.clone();
        let mut tallies = self.fast.tallies();
        let limits = self.fast.handler().limits.clone();
        let mut gate_tally = Tally::default();
        let mut finished = Instant::now();

        while !self.stop.load(Ordering::Acquire) {
            // Read a batch: block for the first datagram (up to WAKE), take what else is there.
            let n = {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = rx
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                match recvmmsg(
                    fd,
                    &mut rx_headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(msgs) => {
                        let mut n = 0;
                        for m in msgs {
                            let cut = m.flags.contains(MsgFlags::MSG_TRUNC);
                            received[n] = if cut {
                                metrics.udp_dropped("oversized");
                                (0, None)
                            } else {
                                (m.bytes, m.address.as_ref().and_then(to_std))
                            };
                            n += 1;
                        }
                        n
                    }
                    Err(Errno::EAGAIN | Errno::EINTR) => 0,
                    Err(e) => {
                        warn!(error = %e, "UDP receive failed");
                        std::thread::sleep(Duration::from_millis(10));
                        0
                    }
                }
            };
            if n == 0 {
                continue;
            }
            let now = Instant::now();
            if n == BATCH {
                metrics
                    .udp_away
                    .observe(now.duration_since(finished).as_secs_f64());
            }
            // Access control and rate limits first, with their settings loaded once a batch.
            let gate = limits.udp_gate(now);
            let mut replies = 0;
            for (i, &(len, src)) in received[..n].iter().enumerate() {
                // Port 0 cannot be answered; such packets are forged.
                let Some(src) = src.filter(|s| s.port() != 0) else {
                    continue;
                };
                let request = &rx[i][..len];
                match gate.admit(request, src.ip(), &mut tx[replies], &mut gate_tally) {
                    Admit::Pass => {}
                    Admit::Reply(len) => {
                        lens[replies] = len;
                        dests[replies] = Some(SockaddrStorage::from(src));
                        replies += 1;
                        continue;
                    }
                    Admit::Drop => continue,
                }
                let fast = if self.use_fast_path {
                    self.fast
                        .answer(request, src.ip(), now, &mut tx[replies], &mut tallies)
                } else {
                    Fast::General
                };
                match fast {
                    Fast::Reply(len) => {
                        tallies.log_reply(request, src, &tx[replies][..len]);
                        lens[replies] = len;
                        dests[replies] = Some(SockaddrStorage::from(src));
                        replies += 1;
                    }
                    Fast::ReplyAndPrefetch(len) => {
                        tallies.log_reply(request, src, &tx[replies][..len]);
                        lens[replies] = len;
                        dests[replies] = Some(SockaddrStorage::from(src));
                        replies += 1;
                        self.prefetch(request, src);
                    }
                    Fast::General => self.general(request, src),
                }
            }
            drop(gate);
            gate_tally.flush(&limits);
            if replies > 0 {
                self.send_batch(&mut tx_headers, &tx, &lens[..replies], &dests[..replies]);
                tallies.finish_batch(now.elapsed());
            }
            finished = Instant::now();
            metrics
                .udp_batch
                .observe(finished.duration_since(now).as_secs_f64());
        }
    }

    /// Send `lens.len()` replies with as few `sendmmsg` calls as the kernel allows.
    fn send_batch(
        &self,
        headers: &mut MultiHeaders<SockaddrStorage>,
        tx: &[Vec<u8>],
        lens: &[usize],
        dests: &[Option<SockaddrStorage>],
    ) {
        let fd = self.socket.as_raw_fd();
        let mut done = 0;
        while done < lens.len() {
            let slices: Vec<[IoSlice<'_>; 1]> = (done..lens.len())
                .map(|i| [IoSlice::new(&tx[i][..lens[i]])])
                .collect();
            let sent = sendmmsg(
                fd,
                headers,
                slices.iter(),
                &dests[done..],
                [] as [nix::sys::socket::ControlMessage<'_>; 0],
                MsgFlags::empty(),
            )
            .map(|r| r.count());
            match sent {
                Ok(0) | Err(Errno::EAGAIN) => {
                    self.fast.handler().metrics.udp_dropped("send");
                    done += 1;
                }
                Ok(k) => done += k,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    debug!(error = %e, "UDP send failed");
                    self.fast.handler().metrics.udp_dropped("send");
                    done += 1;
                }
            }
        }
    }

    /// Refresh the answer to a datagram just answered from the packet cache: the general path
    /// resolves it upstream again and stores the new answer; nothing is sent. Skipped when the
    /// general path is full (the entry then simply expires).
    fn prefetch(&self, request: &[u8], src: SocketAddr) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let raw = request.to_vec();
        let handler = self.fast.handler().clone();
        let in_flight = self.in_flight.clone();
        self.runtime.spawn(async move {
            handler.prefetch(raw, src).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Hand a datagram to the general path; it replies on this worker's socket.
    fn general(&self, request: &[u8], src: SocketAddr) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            // Full (upstreams slow or down): SERVFAIL now rather than silence, so the client
            // is not left waiting on its own timeout; nothing is queued. Counted as overload.
            let metrics = &self.fast.handler().metrics;
            metrics.udp_dropped("overload");
            let mut out = [0u8; 512];
            if let Some(n) = super::limits::short_reply(request, 2, false, &mut out) {
                let _ = self.socket.send_to(&out[..n], src);
            }
            return;
        }
        let raw = request.to_vec();
        let handler = self.fast.handler().clone();
        let socket = self.socket.clone();
        let in_flight = self.in_flight.clone();
        self.runtime.spawn(async move {
            if let Some(response) = handler.answer_udp(raw, src).await
                && let Err(e) = socket.send_to(&response, src)
            {
                debug!(error = %e, client = %src, "UDP send failed");
                handler.metrics.udp_dropped("send");
            }
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
}
