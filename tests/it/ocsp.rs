//! OCSP stapling against a real responder (`openssl ocsp`): a file certificate whose leaf names
//! the responder gets its `good` response stapled, as `openssl s_client -status` sees it.

use crate::support::{DEADLINE, TestProxy, closed_port, poll_until, sample, temp_dir};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

/// `openssl ocsp` answering for the CA in `dir`, killed when dropped.
struct Responder(Child);

impl Drop for Responder {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// `switchyard_ocsp_fetches_total{result}` once it is at least 1.
async fn fetched(proxy: &TestProxy, result: &str) {
    poll_until(
        DEADLINE,
        &format!("an OCSP fetch {result}"),
        || async move {
            let n = sample(
                proxy,
                "switchyard_ocsp_fetches_total",
                &[("result", result)],
            )
            .await;
            n.filter(|n| *n >= 1.0)
        },
    )
    .await;
}

/// A CA, a leaf for a.test with serial 0x1001 naming the responder at `responder`, its chain
/// (leaf, then CA) and an index where it is valid (`V`) or revoked (`R`).
fn pki(dir: &Path, responder: SocketAddr, status: char) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=OCSP test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"],
            &ec[..],
            &[
                "-keyout",
                "leaf-key.pem",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=a.test",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName=DNS:a.test\nauthorityInfoAccess=OCSP;URI:http://{responder}/\nbasicConstraints=CA:FALSE\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-set_serial",
            "0x1001",
            "-days",
            "30",
            "-extfile",
            "ext.cnf",
            "-out",
            "leaf.pem",
        ],
    );
    let chain = [
        std::fs::read(dir.join("leaf.pem")).unwrap(),
        std::fs::read(dir.join("ca.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    let revoked = if status == 'R' { "260101000000Z" } else { "" };
    std::fs::write(
        dir.join("index.txt"),
        format!("{status}\t301231235959Z\t{revoked}\t1001\tunknown\t/CN=a.test\n"),
    )
    .unwrap();
}

/// Starts the responder and waits until it says it listens. (Not by connecting to it: it serves
/// one connection at a time, and one closed without a request stalls it.)
fn responder(dir: &Path, addr: SocketAddr) -> Responder {
    let mut child = Command::new("openssl")
        .args([
            "ocsp",
            "-index",
            "index.txt",
            "-port",
            &addr.port().to_string(),
        ])
        .args([
            "-rsigner",
            "ca.pem",
            "-rkey",
            "ca-key.pem",
            "-CA",
            "ca.pem",
            "-nmin",
            "10",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl ocsp runs");
    let stderr = child.stderr.take().expect("stderr");
    // Killed and reaped when dropped, should the wait below fail.
    let responder = Responder(child);
    let (said, heard) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            said.send(line).ok();
        }
    });
    loop {
        let line = heard
            .recv_timeout(DEADLINE)
            .expect("the responder says it listens");
        if line.contains("waiting for OCSP client connections") {
            return responder;
        }
    }
}

/// What `openssl s_client -status` says of the stapled response.
fn status_seen(addr: SocketAddr) -> String {
    crate::support::pebble::s_client(addr, "a.test", &["-status"])
}

fn proxy_config(dir: &Path) -> String {
    format!(
        "[[listeners]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n[listeners.tls]\n[[listeners.tls.certificates]]\ncert = \"{}\"\nkey = \"{}\"\n\n[admin]\nbind = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"r\"\npool = \"p\"\n[[pools]]\nname = \"p\"\n[[pools.backends]]\nname = \"b\"\naddress = \"{}\"\n",
        dir.join("chain.pem").display(),
        dir.join("leaf-key.pem").display(),
        closed_port(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_ocsp_response_is_fetched_in_the_background_and_stapled() {
    let dir = temp_dir();
    let at = closed_port();
    pki(&dir, at, 'V');
    let _responder = responder(&dir, at);
    let proxy = TestProxy::start(&proxy_config(&dir)).await;
    let addr = proxy.addr;
    let seen = poll_until(DEADLINE, "a stapled response", || async move {
        let seen = tokio::task::spawn_blocking(move || status_seen(addr))
            .await
            .unwrap();
        seen.contains("OCSP Response Status: successful")
            .then_some(seen)
    })
    .await;
    assert!(seen.contains("Cert Status: good"), "{seen}");
    assert!(seen.contains("Next Update:"), "{seen}");
    fetched(&proxy, "stapled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_status_is_never_stapled() {
    let dir = temp_dir();
    let at = closed_port();
    pki(&dir, at, 'R');
    let _responder = responder(&dir, at);
    let proxy = TestProxy::start(&proxy_config(&dir)).await;
    // The responder answered, and its answer was refused: nothing is stapled.
    fetched(&proxy, "refused").await;
    let addr = proxy.addr;
    let seen = tokio::task::spawn_blocking(move || status_seen(addr))
        .await
        .unwrap();
    assert!(seen.contains("OCSP response: no response sent"), "{seen}");
}
