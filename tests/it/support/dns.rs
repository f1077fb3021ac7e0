//! An in-process authoritative DNS server on 127.0.0.1 (UDP), so discovery tests never ask the
//! system's resolver. Tests set the records it answers with, or make it fail, while it runs.

use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// The running server.
pub struct DnsServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    records: Mutex<HashMap<(String, RecordType), Vec<Record>>>,
    failing: AtomicBool,
    queries: AtomicUsize,
}

impl DnsServer {
    /// Starts answering on an ephemeral port; every name is unknown (NXDOMAIN) until set.
    pub async fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("dns addr");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(serve(socket, Arc::clone(&shared)));
        Self { addr, shared, task }
    }

    /// `name`'s A and AAAA records from now on, with `ttl` seconds.
    pub fn set_addresses(&self, name: &str, ips: &[IpAddr], ttl: u32) {
        let owner = Name::from_str(&format!("{name}.")).expect("dns name");
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for ip in ips {
            match ip {
                IpAddr::V4(ip) => v4.push(Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip)))),
                IpAddr::V6(ip) => {
                    v6.push(Record::from_rdata(
                        owner.clone(),
                        ttl,
                        RData::AAAA(AAAA(*ip)),
                    ));
                }
            }
        }
        let mut records = self.shared.records.lock().unwrap();
        records.insert((key(name), RecordType::A), v4);
        records.insert((key(name), RecordType::AAAA), v6);
    }

    /// `name`'s SRV records from now on: (priority, weight, port, target) each.
    pub fn set_srv(&self, name: &str, entries: &[(u16, u16, u16, &str)], ttl: u32) {
        let owner = Name::from_str(&format!("{name}.")).expect("srv name");
        let records = entries
            .iter()
            .map(|&(priority, weight, port, target)| {
                let target = Name::from_str(&format!("{target}.")).expect("srv target");
                Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::SRV(SRV::new(priority, weight, port, target)),
                )
            })
            .collect();
        self.shared
            .records
            .lock()
            .unwrap()
            .insert((key(name), RecordType::SRV), records);
    }

    /// While on, every query is answered SERVFAIL.
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Queries answered so far.
    pub fn queries(&self) -> usize {
        self.shared.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn serve(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buffer = [0u8; 1500];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
            return;
        };
        let Ok(query) = Message::from_vec(&buffer[..len]) else {
            continue;
        };
        shared.queries.fetch_add(1, Ordering::SeqCst);
        let mut answer = Message::new();
        answer
            .set_id(query.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_authoritative(true)
            .set_recursion_desired(query.recursion_desired())
            .set_recursion_available(true);
        for question in query.queries() {
            answer.add_query(question.clone());
            if shared.failing.load(Ordering::SeqCst) {
                answer.set_response_code(ResponseCode::ServFail);
                continue;
            }
            let name = key(&question.name().to_ascii());
            let records = shared.records.lock().unwrap();
            let known = records.keys().any(|(n, _)| *n == name);
            match records.get(&(name, question.query_type())) {
                Some(found) => {
                    answer.add_answers(found.iter().cloned());
                }
                None if known => {} // the name exists, without records of this type
                None => {
                    answer.set_response_code(ResponseCode::NXDomain);
                }
            }
        }
        if let Ok(bytes) = answer.to_vec() {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}
