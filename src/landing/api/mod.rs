//! The HTTP ingest API: `POST /ingest/<stream>` (to be built).
