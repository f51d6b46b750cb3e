//! Serving the simulated API over HTTPS, as a real API server does: a CA
//! and a server certificate signed by it, generated at start (rcgen), and
//! a rustls acceptor in front of the same router. Clients trust the CA
//! through the kubeconfig's `certificate-authority-data`
//! ([`crate::kubeconfig_with_ca`]).
//!
//! Only the ring crypto provider is compiled into pave; the server config
//! names it explicitly (`builder_with_provider`) instead of relying on a
//! process-wide default, so it works whatever else installs one.

use crate::cluster::Cluster;
use crate::error::SimError;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

/// A freshly generated certificate authority and the server certificate it
/// signed, ready to serve.
#[derive(Clone)]
pub struct TlsIdentity {
    ca_pem: String,
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Generates a CA and a server certificate for `localhost`, `127.0.0.1`,
    /// `::1` and every name or IP address in `hosts` (the address served on,
    /// a host name clients use).
    pub fn generate(hosts: &[String]) -> Result<TlsIdentity, SimError> {
        let bad = |what: &str, e: rcgen::Error| SimError::Tls(format!("{what}: {e}"));
        let ca_key = KeyPair::generate().map_err(|e| bad("generating the CA key", e))?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| bad("CA parameters", e))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pave-kube-sim CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .map_err(|e| bad("signing the CA certificate", e))?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        for h in hosts {
            let h = h.trim();
            let unspecified = h.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
            if !h.is_empty() && !unspecified && !names.iter().any(|n| n == h) {
                names.push(h.to_owned());
            }
        }
        let mut params = CertificateParams::new(names.clone())
            .map_err(|e| bad(&format!("server names {names:?}"), e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "pave-kube-sim");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(|e| bad("generating the server key", e))?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| bad("signing the server certificate", e))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = vec![cert.der().clone(), ca_cert.der().clone()];
        let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SimError::Tls(format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| SimError::Tls(format!("server certificate: {e}")))?;
        // HTTP/1.1 only (watches are chunked responses); clients that offer
        // h2 fall back to it.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity {
            ca_pem: ca_cert.pem(),
            server: Arc::new(server),
        })
    }

    /// The CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// Serves the cluster's API over HTTPS on `listener` until the future is
/// dropped. A connection whose handshake fails is closed and logged; the
/// others go on.
pub async fn serve_tls(
    cluster: Cluster,
    listener: TcpListener,
    identity: TlsIdentity,
) -> Result<(), SimError> {
    let acceptor = TlsAcceptor::from(identity.server.clone());
    let app = crate::api::router(cluster);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}

/// Binds `127.0.0.1:0` and serves the cluster there over HTTPS in a
/// background task; returns the address (use `https://{addr}`) and the
/// identity, whose CA goes into the kubeconfig.
pub async fn serve_tls_on_loopback(
    cluster: Cluster,
) -> Result<(SocketAddr, TlsIdentity), SimError> {
    let (listener, addr) = crate::bind_loopback().await?;
    let identity = TlsIdentity::generate(&[])?;
    tokio::spawn(serve_tls(cluster, listener, identity.clone()));
    Ok((addr, identity))
}
