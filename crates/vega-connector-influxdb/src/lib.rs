//! The InfluxDB 1.x connector (being written).
