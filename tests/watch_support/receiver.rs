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

/// A small HTTP receiver on 127.0.0.1: answers its requests in the order `answers` gives
/// (the last one for all further requests) and keeps what it got.
pub struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Starts a receiver answering as `answers` says.
    pub fn start(answers: &[Answer]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let answers = answers.to_vec();
        let kept = got.clone();
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let Some(received) = read_request(&mut stream) else {
                    continue;
                };
                kept.lock().unwrap().push(received);
                match answers[i.min(answers.len() - 1)] {
                    Answer::Status(code) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        );
                    }
                    Answer::Hang => {
                        // Keep the connection open, unanswered, until the client gives up.
                        std::thread::spawn(move || {
                            std::thread::sleep(Duration::from_secs(60));
                            drop(stream);
                        });
                    }
                }
            }
        });
        Receiver { port, got }
    }

    /// A URL of the receiver.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook/token123", self.port)
    }

    /// Every request got so far.
    pub fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Received> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
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
