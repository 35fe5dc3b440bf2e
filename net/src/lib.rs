//! ringcast-net: carries ringcast rings between nodes over QUIC.
