//! The node's one QUIC endpoint: it listens for consumers and dials peers
//! from the same UDP socket.

use std::path::Path;
use std::sync::Arc;

use super::{NodeBuilder, NodeError};
use crate::tls::{self, NodeIdentity};

/// UDP socket buffer size: large enough that a burst of datagrams is not
/// dropped on receive before quinn reads it.
const SOCKET_BUFFER: usize = 4 << 20;

/// Binds the socket and builds the endpoint (with its server side) and the
/// client configuration used to dial peers.
pub(crate) fn bind(
    config: &NodeBuilder,
    certs: &Path,
) -> Result<(quinn::Endpoint, quinn::ClientConfig), NodeError> {
    let identity =
        NodeIdentity::load(certs, &config.name).map_err(|e| NodeError::Tls(e.to_string()))?;
    let transport = Arc::new(transport_config(config)?);
    let server = identity
        .server_config(Arc::clone(&transport))
        .map_err(|e| NodeError::Tls(e.to_string()))?;
    let client = identity
        .client_config(transport)
        .map_err(|e| NodeError::Tls(e.to_string()))?;

    let listen_err = |source| NodeError::Listen {
        addr: config.listen,
        source,
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(config.listen),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(listen_err)?;
    // Best effort: the system may cap them; quinn works either way.
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the receive buffer");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(error = %e, "cannot enlarge the send buffer");
    }
    socket.bind(&config.listen.into()).map_err(listen_err)?;
    let socket: std::net::UdpSocket = socket.into();
    let runtime = quinn::default_runtime()
        .ok_or_else(|| NodeError::Config("a tokio runtime is required".into()))?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        runtime,
    )
    .map_err(listen_err)?;
    Ok((endpoint, client))
}

fn transport_config(config: &NodeBuilder) -> Result<quinn::TransportConfig, NodeError> {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout).map_err(|_| {
        NodeError::Config(format!(
            "idle timeout {:?} is too large",
            config.idle_timeout
        ))
    })?;
    transport.max_idle_timeout(Some(idle));
    if config.initial_rtt.is_zero() {
        return Err(NodeError::Config("the initial RTT must be positive".into()));
    }
    transport.initial_rtt(config.initial_rtt);
    transport.keep_alive_interval(Some(config.keep_alive.unwrap_or(config.idle_timeout / 3)));
    // One stream per consumer, acks on its other half: nothing else is opened.
    transport.max_concurrent_bidi_streams(1u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    // Windows large enough for a fast stream on a fast link; memory per
    // connection stays bounded by them.
    transport.stream_receive_window((16u32 << 20).into());
    transport.receive_window((32u32 << 20).into());
    transport.send_window(32 << 20);
    Ok(transport)
}

/// The node name in the certificate the peer of `conn` presented (already
/// verified against the cluster CA by the TLS handshake).
pub(crate) fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let cert = tls::peer_certificate(conn.peer_identity())?;
    tls::peer_node_name(&cert).ok()
}
