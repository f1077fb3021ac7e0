//! Memory of a rate-limit table: resident bytes per key as distinct client addresses arrive,
//! each sending one request, up to a million; then rounds of a million new clients each, once
//! the previous round's keys are idle. `cargo bench --bench limiter_memory` (figures in
//! docs/src/access.md).

use switchyard::route::access::limit::{Gcra, Table, ip_key};

fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn client(round: u128, i: u128) -> u128 {
    let ip = std::net::IpAddr::V6(std::net::Ipv6Addr::from((round << 96) | (i << 64)));
    ip_key(ip, 32, 64)
}

fn main() {
    let table = Table::default();
    // 50/s, burst 10: each key stays live for 220 ms after its request.
    let gcra = Gcra {
        interval: 20_000_000,
        window: 220_000_000,
    };
    let before = resident();
    let now = 1_000_000_000;
    let mut keys = 0;
    for checkpoint in [1_000, 10_000, 100_000, 1_000_000u128] {
        while keys < checkpoint {
            assert!(table.admit(&gcra, client(0, keys), now).admitted);
            keys += 1;
        }
        let grown = resident() - before;
        println!(
            "{keys:>9} keys: {} held, {} cells, resident +{:.1} MiB, {} bytes per key",
            table.held(now),
            table.capacity(),
            grown as f64 / (1 << 20) as f64,
            grown / keys as u64
        );
    }
    // The previous round's keys are idle: their cells go to the new ones, so memory stays
    // where one full table put it.
    let mut at = now;
    for round in 1..=3u128 {
        at += 1_000_000_000;
        for i in 0..1_000_000u128 {
            table.admit(&gcra, client(round, i), at);
        }
        println!(
            "round {round}: {} held, {} cells, resident +{:.1} MiB",
            table.held(at),
            table.capacity(),
            resident().saturating_sub(before) as f64 / (1 << 20) as f64
        );
    }
}
