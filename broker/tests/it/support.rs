//! Test support: a real `gregor` process on loopback with its own temp data dir, and a tiny
//! blocking Kafka protocol client over std TCP, built on kafka-protocol's encoders.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// The gregor binary under test.
pub fn gregor_bin() -> &'static str {
    env!("CARGO_BIN_EXE_gregor")
}

/// A running broker process.
pub struct Broker {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    _tmp: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts `gregor dev` on free loopback ports in a fresh temp dir.
    pub fn start() -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let mut b = Broker::start_in(&data, &[]);
        b._tmp = Some(tmp);
        b
    }

    /// Starts `gregor dev` on `data` with extra overrides.
    pub fn start_in(data: &Path, overrides: &[&str]) -> Broker {
        let mut cmd = Command::new(gregor_bin());
        cmd.arg("dev")
            .arg("--data-dir")
            .arg(data)
            .args(["--override", "listeners=PLAINTEXT://127.0.0.1:0"])
            .args(["--override", "advertised.listeners=PLAINTEXT://127.0.0.1:0"])
            .args(["--override", "metrics.listener=127.0.0.1:0"]);
        for o in overrides {
            cmd.args(["--override", o]);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn gregor");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut addr, mut metrics) = (None, None);
        let mut seen = Vec::new();
        while addr.is_none() || metrics.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => panic!("gregor did not start; stderr:\n{}", seen.join("\n")),
            };
            if let Some(a) = line.strip_prefix("gregor listening on ") {
                addr = a.trim().parse().ok();
            }
            if let Some(m) = line.strip_prefix("metrics on http://") {
                metrics = m.trim_end_matches("/metrics").parse().ok();
            }
            seen.push(line);
        }
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Broker {
            child,
            addr: addr.expect("addr"),
            metrics: metrics.expect("metrics"),
            _tmp: None,
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        wait_exit(&mut self.child, Duration::from_secs(15))
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Resident memory in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// GET a path on the metrics endpoint: (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.metrics).expect("connect metrics");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let code = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a child to exit, killing it past the deadline.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A blocking Kafka connection.
pub struct Conn {
    pub stream: TcpStream,
    correlation: i32,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        Conn {
            stream,
            correlation: 0,
        }
    }

    /// Sends raw frame bytes (a size prefix is added).
    pub fn send_raw(&mut self, body: &[u8]) {
        let mut f = Vec::with_capacity(body.len() + 4);
        f.extend_from_slice(&(body.len() as i32).to_be_bytes());
        f.extend_from_slice(body);
        self.stream.write_all(&f).expect("write");
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// Writes a typed request at `version` without reading the response.
    pub fn send<R: Request>(&mut self, version: i16, req: &R) -> i32 {
        self.correlation += 1;
        let key = ApiKey::try_from(R::KEY).expect("key");
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("gregor-it")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .expect("header");
        req.encode(&mut buf, version).expect("body");
        self.send_raw(&buf);
        self.correlation
    }

    /// Reads the response to a request sent at `version`.
    pub fn recv<R: Request>(&mut self, version: i16, correlation: i32) -> R::Response {
        let mut frame = self.read_frame().expect("response frame");
        let hv = <R::Response as HeaderVersion>::header_version(version);
        let hv = if R::KEY == ApiKey::ApiVersions as i16 {
            0
        } else {
            hv
        };
        let header = ResponseHeader::decode(&mut frame, hv).expect("response header");
        assert_eq!(header.correlation_id, correlation, "responses out of order");
        R::Response::decode(&mut frame, version).expect("response body")
    }

    /// Sends a request and reads its response.
    pub fn call<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let c = self.send(version, req);
        self.recv::<R>(version, c)
    }

    /// Whether the broker closed this connection (reads EOF or an error).
    pub fn closed_by_peer(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}

/// A request header for a raw frame: api key, version, correlation id, null client id.
pub fn raw_header(api_key: i16, version: i16, correlation: i32) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(correlation);
    b.put_i16(-1);
    b
}

/// Reads the i16 error code at the start of a v0 ApiVersions body after the header.
pub fn api_versions_error(mut frame: Bytes) -> i16 {
    frame.advance(4);
    frame.get_i16()
}
