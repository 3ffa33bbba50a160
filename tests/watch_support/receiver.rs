//! A small HTTP receiver on 127.0.0.1 that stands for the `notify:` webhooks in tests: it keeps
//! what it gets and answers as told (a status, or never).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the receiver answers a request.
#[derive(Clone, Copy)]
pub enum Answer {
    /// Answers with this status.
    Status(u16),
    /// Reads the request and never answers.
    Hang,
}

/// A request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its headers, as sent.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Received {
    /// The header `name`, whatever its case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// A small HTTP receiver on 127.0.0.1 (or HTTPS, [`Receiver::start_tls`]): answers its
/// requests in the order `answers` gives (the last one for all further requests) and keeps what
/// it got.
pub struct Receiver {
    port: u16,
    tls: bool,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts a receiver answering as `answers` says.
    pub fn start(answers: &[Answer]) -> Receiver {
        Receiver::serve(answers, None)
    }

    /// Starts an HTTPS receiver with a certificate and its key (PEM); a client that does not
    /// trust it fails its handshake, and nothing is kept.
    pub fn start_tls(answers: &[Answer], cert_pem: &[u8], key_pem: &[u8]) -> Receiver {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .expect("a PEM certificate");
        let key = PrivateKeyDer::from_pem_slice(key_pem).expect("a PEM key");
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("a TLS server configuration");
        Receiver::serve(answers, Some(Arc::new(config)))
    }

    fn serve(answers: &[Answer], tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers = answers.to_vec();
        let kept = got.clone();
        let secure = tls.is_some();
        std::thread::spawn(move || {
            let mut answered = 0;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let answer = answers[answered.min(answers.len() - 1)];
                let handled = match &tls {
                    None => handle(stream, answer, &kept),
                    // The handshake happens on the first read: a client that does not trust
                    // the certificate ends it there, and no request is kept.
                    Some(config) => match rustls::ServerConnection::new(config.clone()) {
                        Ok(connection) => {
                            handle(rustls::StreamOwned::new(connection, stream), answer, &kept)
                        }
                        Err(_) => false,
                    },
                };
                answered += usize::from(handled);
            }
        });
        Receiver {
            port,
            tls: secure,
            got,
        }
    }

    /// A URL of the receiver.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/hook/token123", self.port)
    }

    /// Every request got so far.
    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Reads one request from `stream`, keeps it in `kept` and answers it; whether one was read.
fn handle<S: Read + Write + Send + 'static>(
    stream: S,
    answer: Answer,
    kept: &Mutex<Vec<Received>>,
) -> bool {
    let mut reader = BufReader::new(stream);
    let Some(received) = read_request(&mut reader) else {
        return false;
    };
    kept.lock().unwrap().push(received);
    match answer {
        Answer::Status(code) => {
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = reader.get_mut().flush();
        }
        Answer::Hang => {
            // Keep the connection open, unanswered, until the client gives up.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(60));
                drop(reader);
            });
        }
    }
    true
}

fn read_request(reader: &mut impl BufRead) -> Option<Received> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Received { headers, body })
}

impl Receiver {
    /// The `event` of each JSON notification got so far, in order.
    pub fn events(&self) -> Vec<String> {
        (self.got().iter())
            .map(|r| r.json()["event"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}
