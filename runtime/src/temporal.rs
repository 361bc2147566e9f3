//! The Temporal connection both processes open: plaintext, or TLS (mutual when a client
//! certificate is configured), retried while the server starts.

use crate::config::{Config, TemporalTls};
use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, GrpcCompression,
    TlsOptions,
};

/// Connects a Temporal client, retrying for a while: the server may still be starting. A
/// TLS file that cannot be read fails at once.
pub async fn connect_temporal(cfg: &Config) -> anyhow::Result<Client> {
    let tls = cfg.temporal_tls.as_ref().map(tls_options).transpose()?;
    let mut last = None;
    for _ in 0..60 {
        match connect(cfg, tls.clone()).await {
            Ok(client) => return Ok(client),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    Err(anyhow::anyhow!(
        "cannot reach Temporal at {}: {:?}",
        cfg.temporal_address,
        last
    ))
}

/// One attempt to connect a Temporal client (over TLS when configured).
pub async fn connect_temporal_once(cfg: &Config) -> anyhow::Result<Client> {
    let tls = cfg.temporal_tls.as_ref().map(tls_options).transpose()?;
    connect(cfg, tls).await
}

async fn connect(cfg: &Config, tls: Option<TlsOptions>) -> anyhow::Result<Client> {
    let url: temporalio_client::Url = cfg.temporal_address.parse()?;
    let opts = ConnectionOptions::new(url)
        .identity(format!("sellwindow@{}", std::process::id()))
        .maybe_tls_options(tls)
        .grpc_compression(if cfg.temporal_grpc_gzip {
            GrpcCompression::Gzip
        } else {
            GrpcCompression::None
        })
        .build();
    let conn = Connection::connect(opts).await?;
    Ok(Client::new(
        conn,
        ClientOptions::new(cfg.temporal_namespace.clone()).build(),
    )?)
}

/// Reads the PEM files of the TLS configuration (a missing file fails the start, naming it).
fn tls_options(tls: &TemporalTls) -> anyhow::Result<TlsOptions> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
    };
    let client = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => Some(
            ClientTlsOptions::builder()
                .client_cert(read(cert)?)
                .client_private_key(read(key)?)
                .build(),
        ),
        _ => None,
    };
    Ok(TlsOptions::builder()
        .maybe_server_root_ca_cert(tls.ca_file.as_deref().map(read).transpose()?)
        .maybe_domain(tls.server_name.clone())
        .maybe_client_tls_options(client)
        .build())
}
