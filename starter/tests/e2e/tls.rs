//! TLS to Temporal: a worker whose only way to the server is a proxy that demands a client
//! certificate signed by the test's CA (as a production frontend with mTLS does) runs the
//! listing, and a client without a certificate is turned away.

use crate::helpers::{AppOptions, Proc, spawn_app_with};
use crate::wait_event;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::rustls::{self, RootCertStore, server::WebPkiClientVerifier};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_reaches_temporal_over_mutual_tls_and_a_client_without_a_certificate_does_not() {
    let app = spawn_app_with(AppOptions {
        no_in_process_worker: true,
        ..AppOptions::default()
    })
    .await;
    let pki = Pki::generate(app.scratch_dir());
    let proxy = MutualTlsProxy::start(&pki, app.temporal_port()).await;

    let mut tls = app.cfg.clone();
    tls.temporal_address = format!("https://127.0.0.1:{}", proxy.port);
    tls.temporal_tls = Some(sellwindow_runtime::TemporalTls {
        ca_file: Some(pki.file("ca.pem")),
        client_cert_file: Some(pki.file("client.pem")),
        client_key_file: Some(pki.file("client.key")),
        server_name: Some("localhost".into()),
    });
    let mut worker = Proc::worker_with(&app, &tls);

    // The listing runs only if the worker got through the proxy.
    let product = app.product(900).await;
    let w = app
        .window(&product, 1, 5, Duration::from_secs(60), 60)
        .await;
    let order = app.reserve(&w, "ann", 2, "k").await;
    assert!(
        order.is_ok(),
        "{order:?}\nworker log:\n{}",
        worker.log_tail(20)
    );
    wait_event(&app, &w, "threshold.reached").await;
    assert!(proxy.handshakes() > 0);

    let mut anonymous = tls.clone();
    if let Some(t) = anonymous.temporal_tls.as_mut() {
        t.client_cert_file = None;
        t.client_key_file = None;
    }
    // The refusal must be the TLS layer's: a client that got through would be answered
    // (NOT_FOUND for the probe), so only a transport or handshake error counts.
    let refused_before = proxy.refused();
    let refusal = match sellwindow_runtime::connect_temporal_once(&anonymous).await {
        Err(e) => format!("{e:?}"),
        Ok(client) => {
            let h = client.get_workflow_handle::<sellwindow_workflows::SellWindow>("probe");
            match h.describe(Default::default()).await {
                Ok(_) | Err(temporalio_client::errors::WorkflowInteractionError::NotFound(_)) => {
                    panic!("a client without a certificate got through")
                }
                Err(e) => format!("{e:?}"),
            }
        }
    };
    let said = refusal.to_lowercase();
    assert!(
        ["transport", "tls", "certificate", "handshake", "connection"]
            .iter()
            .any(|w| said.contains(w)),
        "refused, but not as a transport or TLS error: {refusal}"
    );
    assert!(
        proxy.refused() > refused_before,
        "the proxy never turned a handshake away: {refusal}"
    );

    worker.kill().await;
    proxy.stop();
    app.stop().await;
}

/// A CA, a server certificate for localhost and a client certificate, made by `openssl`.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn generate(scratch: &Path) -> Self {
        let dir = scratch.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let sh = |script: &str| {
            let out = std::process::Command::new("bash")
                .arg("-ec")
                .arg(script)
                .current_dir(&dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        sh(&format!(
            "openssl req -x509 {key} -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        ));
        for (name, usage, san) in [
            ("server", "serverAuth", "subjectAltName=DNS:localhost"),
            (
                "client",
                "clientAuth",
                "subjectAltName=DNS:sellwindow-worker",
            ),
        ] {
            sh(&format!(
                "openssl req {key} -keyout {name}.key -out {name}.csr -subj /CN={name}
                 printf '%s\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage={usage}\\n' '{san}' > {name}.ext
                 openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                   -out {name}.pem -days 2 -extfile {name}.ext"
            ));
        }
        Self { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Terminates TLS, demanding a client certificate from the PKI's CA, and forwards the
/// plaintext HTTP/2 to the dev server.
struct MutualTlsProxy {
    port: u16,
    handshakes: Arc<AtomicUsize>,
    /// Handshakes turned away (no or an unknown client certificate).
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl MutualTlsProxy {
    async fn start(pki: &Pki, upstream: u16) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pem = |name: &str| std::fs::read(pki.file(name)).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(&pem("ca.pem")).unwrap())
            .unwrap();
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let chain = vec![CertificateDer::from_pem_slice(&pem("server.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(&pem("server.key")).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (counted, turned_away) = (handshakes.clone(), refused.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counted, turned_away) =
                    (acceptor.clone(), counted.clone(), turned_away.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        turned_away.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut up) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                    }
                });
            }
        });
        Self {
            port,
            handshakes,
            refused,
            task,
        }
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn stop(self) {
        self.task.abort();
    }
}
