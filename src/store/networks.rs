//! Network, endpoint and port-binding rows (owned by the network work).
