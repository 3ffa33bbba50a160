//! `dataservice`: the demo service. A tiny HTTP server (std only, so it links statically and runs
//! as the only file of an image) answering every GET with
//! `<result><name>hello</name><id>ID</id></result>`, where ID tells the replicas apart: the
//! container's hostname, or a random id when there is none.
//!
//! It listens on 0.0.0.0:8080 (`PORT` overrides) and does no DNS lookups. Build it with
//! `images/dataservice/build.sh`. `dataservice get` is its own client: it asks the server on
//! 127.0.0.1 and prints the answer, so a test can reach each replica from inside its container
//! where the routing mesh does not work. `dataservice exit CODE` exits with CODE at once: a
//! stand-in for a migration job (`deploy.mode: replicated-job`) that succeeds or fails.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// The replica's id: `/etc/hostname` (a container's short id under Docker), else a fresh uuid.
fn replica_id() -> String {
    let from = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    from("/etc/hostname")
        .or_else(|| from("/proc/sys/kernel/random/uuid"))
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

fn serve(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut seen = request_line.len();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line)?;
        seen += read;
        if read == 0 || line == "\r\n" || line == "\n" || seen > MAX_HEAD {
            break;
        }
    }
    match request_line.split_whitespace().next() {
        Some("GET") => respond(&mut stream, "200 OK", body, false),
        Some("HEAD") => respond(&mut stream, "200 OK", body, true),
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "<error>only GET is served</error>\n",
            false,
        ),
    }
}

/// Installs handlers so that SIGTERM and SIGINT end the process at once: as PID 1 in a container
/// it would otherwise ignore them, and every `docker stop` would wait for the kill timeout.
fn exit_on_signals() {
    extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn _exit(status: i32) -> !;
    }
    extern "C" fn stop(_signum: i32) {
        // SAFETY: _exit is async-signal-safe and takes no pointers.
        unsafe { _exit(0) }
    }
    const SIGINT: i32 = 2;
    const SIGTERM: i32 = 15;
    // SAFETY: `signal` is given valid signal numbers and a handler that only calls `_exit`.
    unsafe {
        signal(SIGINT, stop);
        signal(SIGTERM, stop);
    }
}

/// Asks the server on 127.0.0.1:`port` and prints the body of its answer.
fn get(port: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(format!("127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer)?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(answer.as_str(), |(_, b)| b);
    print!("{body}");
    Ok(())
}

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".to_string());
    if std::env::args().nth(1).as_deref() == Some("exit") {
        let code = std::env::args().nth(2).and_then(|c| c.parse().ok());
        eprintln!("dataservice: exiting with {}", code.unwrap_or(2));
        std::process::exit(code.unwrap_or(2));
    }
    if std::env::args().nth(1).as_deref() == Some("get") {
        if let Err(e) = get(&port) {
            eprintln!("dataservice get: {e}");
            std::process::exit(1);
        }
        return;
    }
    exit_on_signals();
    let body = format!(
        "<result><name>hello</name><id>{}</id></result>\n",
        escape_xml(&replica_id())
    );
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("dataservice: cannot listen on 0.0.0.0:{port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("dataservice: listening on 0.0.0.0:{port}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let body = body.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve(stream, &body) {
                        eprintln!("dataservice: {e}");
                    }
                });
            }
            Err(e) => eprintln!("dataservice: accept failed: {e}"),
        }
    }
}
