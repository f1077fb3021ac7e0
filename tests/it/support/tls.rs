//! TLS fixtures: a CA and leaf certificates made at test time (so no test breaks on a date),
//! written as PEM files in the key formats operators meet, and a rustls client that reports
//! which certificate the proxy presented.
//!
//! Longer than most files on purpose: every certificate and key format the tests need is made
//! here.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, SupportedProtocolVersion};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// How a leaf's private key is written.
#[derive(Debug, Clone, Copy)]
pub enum KeyFormat {
    /// ECDSA P-256, PKCS#8 (`PRIVATE KEY`).
    EcdsaPkcs8,
    /// ECDSA P-256, SEC1 (`EC PRIVATE KEY`).
    EcdsaSec1,
    /// RSA 2048, PKCS#1 (`RSA PRIVATE KEY`).
    RsaPkcs1,
    /// Ed25519, PKCS#8.
    Ed25519,
}

/// A test CA that signs leaves into its own directory.
pub struct Pki {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate.
    pub ca: CertificateDer<'static>,
    /// Where leaves are written.
    pub dir: PathBuf,
}

/// A leaf certificate's files.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate, to compare with what a handshake presented.
    pub der: Vec<u8>,
}

impl Pki {
    /// A new CA and an empty directory.
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Switchyard test CA");
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca = params.self_signed(&key).expect("CA certificate");
        Self {
            issuer: rcgen::Issuer::new(params, key),
            ca: ca.der().clone(),
            dir: super::temp_dir(),
        }
    }

    /// An ECDSA leaf for `names`, written as `stem.pem` and `stem-key.pem`.
    pub fn leaf(&self, stem: &str, names: &[&str]) -> Leaf {
        self.leaf_with(stem, names, KeyFormat::EcdsaPkcs8)
    }

    /// A leaf for `names` that expired in 2021.
    pub fn expired_leaf(&self, stem: &str, names: &[&str]) -> Leaf {
        self.make_leaf(stem, names, KeyFormat::EcdsaPkcs8, |params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    /// This CA's certificate written as `name` in its directory, for a config to trust.
    pub fn ca_file(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(
            &path,
            pem::encode(&pem::Pem::new("CERTIFICATE", self.ca.to_vec())),
        )
        .expect("write CA");
        path
    }

    /// A leaf for `names` that expires `days` from now.
    pub fn leaf_expiring_in(&self, stem: &str, names: &[&str], days: u64) -> Leaf {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        let (y, m, d) = civil_date(now / 86_400 + days);
        self.make_leaf(stem, names, KeyFormat::EcdsaPkcs8, |params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(y, m, d);
        })
    }

    /// A leaf for `names` with its key in `format`.
    pub fn leaf_with(&self, stem: &str, names: &[&str], format: KeyFormat) -> Leaf {
        self.make_leaf(stem, names, format, |_| {})
    }

    fn make_leaf(
        &self,
        stem: &str,
        names: &[&str],
        format: KeyFormat,
        adjust: impl FnOnce(&mut rcgen::CertificateParams),
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("leaf params");
        adjust(&mut params);
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, first.as_str());
        }
        let algorithm = match format {
            KeyFormat::EcdsaPkcs8 | KeyFormat::EcdsaSec1 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyFormat::RsaPkcs1 => &rcgen::PKCS_RSA_SHA256,
            KeyFormat::Ed25519 => &rcgen::PKCS_ED25519,
        };
        let key = rcgen::KeyPair::generate_for(algorithm).expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        let key_pem = match format {
            KeyFormat::EcdsaPkcs8 | KeyFormat::Ed25519 => key.serialize_pem(),
            KeyFormat::EcdsaSec1 => inner_key_pem("EC PRIVATE KEY", &key.serialize_der()),
            KeyFormat::RsaPkcs1 => inner_key_pem("RSA PRIVATE KEY", &key.serialize_der()),
        };
        let leaf = Leaf {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}-key.pem")),
            der: cert.der().to_vec(),
        };
        write_atomically(&leaf.cert, cert.pem().as_bytes());
        write_atomically(&leaf.key, key_pem.as_bytes());
        leaf
    }
}

/// Replaces `path` in one step, as certificate tools do, so a watcher never reads half a file.
pub fn write_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// The key inside a PKCS#8 document (PKCS#1 for RSA, SEC1 for EC), as PEM with `label`.
fn inner_key_pem(label: &str, pkcs8: &[u8]) -> String {
    // PrivateKeyInfo ::= SEQUENCE { version INTEGER, algorithm SEQUENCE, privateKey OCTET STRING }
    let (_, info) = der_element(pkcs8);
    let (rest, _version) = der_element(info);
    let (rest, _algorithm) = der_element(rest);
    let (_, key) = der_element(rest);
    pem::encode(&pem::Pem::new(label, key.to_vec()))
}

/// Splits the first DER element off `der`: (what follows it, its contents).
fn der_element(der: &[u8]) -> (&[u8], &[u8]) {
    let (len, header) = match der[1] {
        short if short < 0x80 => (usize::from(short), 2),
        long => {
            let bytes = usize::from(long & 0x7f);
            let len = der[2..2 + bytes]
                .iter()
                .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (len, 2 + bytes)
        }
    };
    (&der[header + len..], &der[header..header + len])
}

/// A client offering `versions` and `alpn` that accepts any certificate (tests compare what
/// was presented instead), still checking the handshake signatures.
pub fn client_config(
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&str],
) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .expect("valid versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(switchyard::config::SkipVerify(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// TLS 1.3 and 1.2, ALPN `h2` and `http/1.1`.
pub fn default_client() -> Arc<ClientConfig> {
    client_config(rustls::ALL_VERSIONS, &["h2", "http/1.1"])
}

/// Connects and completes a handshake; `sni` `None` sends no server name (as for an address).
pub async fn connect(
    addr: SocketAddr,
    sni: Option<&str>,
    config: &Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = match sni {
        Some(name) => ServerName::try_from(name.to_owned()).expect("valid server name"),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::clone(config))
        .connect(name, tcp)
        .await
}

/// The leaf certificate the server presented.
pub fn presented_by(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.to_vec())
        .expect("the server presented a certificate")
}

/// An HTTP connection over a finished handshake: HTTP/2 if ALPN chose it, else HTTP/1.1.
pub enum Http {
    One(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Two(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Http {
    /// Starts HTTP on `stream`, by its ALPN.
    pub async fn over(stream: TlsStream<TcpStream>) -> Self {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(stream);
        if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("HTTP/2 handshake");
            tokio::spawn(conn);
            Self::Two(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("HTTP/1.1 handshake");
            tokio::spawn(conn);
            Self::One(sender)
        }
    }

    /// GET `path` with `Host: host`: the status, the version and the body.
    pub async fn get(&mut self, host: &str, path: &str) -> (StatusCode, http::Version, String) {
        let (parts, body) = self.fetch(host, path).await;
        (parts.status, parts.version, body)
    }

    /// GET `path` with `Host: host`: the response head and the body.
    pub async fn fetch(&mut self, host: &str, path: &str) -> (http::response::Parts, String) {
        let mut req = Request::get(path);
        req = match self {
            Self::One(_) => req.header(http::header::HOST, host),
            Self::Two(_) => req.uri(format!("https://{host}{path}")),
        };
        let req = req.body(Full::default()).expect("valid request");
        let response = match self {
            Self::One(sender) => sender.send_request(req).await,
            Self::Two(sender) => sender.send_request(req).await,
        }
        .expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts, String::from_utf8_lossy(&body).into_owned())
    }
}

/// A config whose first listener terminates TLS with `certificates` (the first is the
/// default), in front of one pool over `upstream`; `set_listener("tls.…", …)` adds settings.
pub fn tls_config(upstream: SocketAddr, certificates: &[&Leaf]) -> super::config::ConfigBuilder {
    tls_config_over(&[("a", upstream, 1)], certificates)
}

/// `tls_config` over a pool of `backends`.
pub fn tls_config_over(
    backends: &[(&str, SocketAddr, u32)],
    certificates: &[&Leaf],
) -> super::config::ConfigBuilder {
    let certificates: Vec<toml::Value> = certificates
        .iter()
        .map(|leaf| {
            let mut table = toml::Table::new();
            table.insert("cert".into(), leaf.cert.display().to_string().into());
            table.insert("key".into(), leaf.key.display().to_string().into());
            toml::Value::Table(table)
        })
        .collect();
    let mut tls = toml::Table::new();
    tls.insert("certificates".into(), toml::Value::Array(certificates));
    super::config::ConfigBuilder::single_pool(backends).with_listener(|listener| {
        listener.insert("name".into(), "https".into());
        listener.insert("tls".into(), toml::Value::Table(tls));
    })
}

/// The leaf certificate presented to a client asking for `sni`, or the handshake error.
pub async fn presented(addr: SocketAddr, sni: Option<&str>) -> std::io::Result<Vec<u8>> {
    let stream = connect(addr, sni, &default_client()).await?;
    Ok(presented_by(&stream))
}

/// A server config presenting `leaf` with ALPN h2 and http/1.1; with `client_ca`, it demands a
/// client certificate issued by that CA.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&CertificateDer<'static>>,
) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("read cert")
        .collect::<Result<_, _>>()
        .expect("parse cert");
    let key = PrivateKeyDer::from_pem_file(key).expect("read key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.clone()).expect("client CA");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A file in the repository's `certs/` directory.
pub fn repo_cert(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("certs")
        .join(name)
}

/// The (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_date(days: u64) -> (i32, u8, u8) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}
