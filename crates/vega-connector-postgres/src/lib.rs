//! The PostgreSQL connector (being written).
