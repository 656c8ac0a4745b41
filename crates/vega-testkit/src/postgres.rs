//! A throwaway PostgreSQL server (being written).
