//! A local SMTP sink: a real SMTP server (plain, on 127.0.0.1) that accepts mail and keeps it in memory, for the
//! tests. Recipients whose address starts with `nobody@` are refused with 550 (mailbox does not exist); after
//! `fail_next(n)` the next n sessions are answered 451 (try again later) at MAIL FROM.

use std::sync::{
    atomic::{AtomicU32, Ordering},
    Arc, Mutex,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// One message as received.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The raw message (headers and body) as sent.
    pub data: String,
}

impl ReceivedMail {
    /// The `Subject:` header.
    pub fn subject(&self) -> String {
        self.data
            .lines()
            .find_map(|line| line.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned()
    }

    /// The message with quoted-printable soft breaks and escapes decoded (good enough to search the text).
    pub fn decoded(&self) -> String {
        let joined = self.data.replace("=\r\n", "").replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() {
                if let Ok(byte) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                    out.push(byte);
                    i += 3;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[derive(Clone, Default)]
pub struct SmtpSink {
    messages: Arc<Mutex<Vec<ReceivedMail>>>,
    fail_sessions: Arc<AtomicU32>,
    refused: Arc<AtomicU32>,
}

impl SmtpSink {
    /// Starts the sink on a free port; returns it and the port.
    pub async fn start() -> std::io::Result<(Self, u16)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let sink = Self::default();
        let accept = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = accept.clone();
                tokio::spawn(async move {
                    if let Err(error) = sink.session(stream).await {
                        tracing::debug!(%error, "smtp sink session ended");
                    }
                });
            }
        });
        Ok((sink, port))
    }

    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Messages to one address.
    pub fn to(&self, address: &str) -> Vec<ReceivedMail> {
        self.messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(address)))
            .collect()
    }

    /// The next `sessions` sessions are refused with a transient 451.
    pub fn fail_next(&self, sessions: u32) {
        self.fail_sessions.store(sessions, Ordering::SeqCst);
    }

    /// Sessions refused so far (transient failures and refused recipients).
    pub fn refusals(&self) -> u32 {
        self.refused.load(Ordering::SeqCst)
    }

    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        write.write_all(b"220 paycore-sink ESMTP ready\r\n").await?;
        let mut from = String::new();
        let mut to = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let command = line.trim_end().to_owned();
            let upper = command.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250-paycore-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            } else if upper.starts_with("HELO") {
                b"250 paycore-sink\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                let failing = self
                    .fail_sessions
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if failing {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                    b"451 4.3.0 Temporary failure, try again later\r\n"
                } else {
                    from = address(&command[10..]);
                    to.clear();
                    b"250 2.1.0 OK\r\n"
                }
            } else if upper.starts_with("RCPT TO:") {
                let recipient = address(&command[8..]);
                if recipient.to_ascii_lowercase().starts_with("nobody@") {
                    self.refused.fetch_add(1, Ordering::SeqCst);
                    b"550 5.1.1 No such mailbox here\r\n"
                } else {
                    to.push(recipient);
                    b"250 2.1.5 OK\r\n"
                }
            } else if upper == "DATA" {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                if let Ok(mut messages) = self.messages.lock() {
                    messages.push(ReceivedMail {
                        from: from.clone(),
                        to: to.clone(),
                        data,
                    });
                }
                b"250 2.0.0 Queued\r\n"
            } else if upper == "RSET" || upper == "NOOP" {
                b"250 OK\r\n"
            } else if upper == "QUIT" {
                write.write_all(b"221 Bye\r\n").await?;
                return Ok(());
            } else {
                b"502 5.5.2 Command not recognised\r\n"
            };
            write.write_all(reply).await?;
        }
    }
}

fn address(raw: &str) -> String {
    let raw = raw.trim();
    let inner = raw
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address)
        .unwrap_or(raw);
    inner.trim().to_owned()
}
