//! Memory of a rate-limit table: resident bytes per key after a million distinct client
//! addresses each sent one request, and after the sweep once they have gone idle.
//! `cargo bench --bench limiter_memory` (figures in docs/src/access.md).

use switchyard::route::access::limit::{Gcra, Table, ip_key};

fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let table = Table::default();
    // 50/s, burst 10: each key stays in the table for 220 ms after its request.
    let gcra = Gcra {
        interval: 20_000_000,
        window: 220_000_000,
    };
    let before = resident();
    let now = 1_000_000_000;
    for i in 0..1_000_000u32 {
        let ip = std::net::IpAddr::V6(std::net::Ipv6Addr::from(u128::from(i) << 64));
        assert!(table.admit(&gcra, ip_key(ip, 32, 64), now).admitted);
    }
    let full = resident();
    println!("keys: {}", table.len());
    println!(
        "resident: +{:.1} MiB, {} bytes per key",
        (full - before) as f64 / (1 << 20) as f64,
        (full - before) / 1_000_000
    );
    // Rounds of a million new clients, each round's keys idle and swept before the next:
    // what the sweep frees is reused, so memory stays near where one full table put it.
    let mut at = now;
    for round in 1..=3u128 {
        at += 1_000_000_000;
        let left = table.sweep(at);
        for i in 0..1_000_000u128 {
            let ip = std::net::IpAddr::V6(std::net::Ipv6Addr::from((round << 96) | (i << 64)));
            table.admit(&gcra, ip_key(ip, 32, 64), at);
        }
        println!(
            "round {round}: {left} keys left by the sweep, {} now, resident +{:.1} MiB",
            table.len(),
            resident().saturating_sub(before) as f64 / (1 << 20) as f64
        );
    }
}
