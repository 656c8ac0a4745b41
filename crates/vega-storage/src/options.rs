//! How a staged version writes its Parquet files.

use parquet::basic::{Compression, ZstdLevel};

/// The compression codec of new segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentCompression {
    /// Zstandard at its default level: small files, fast to read.
    #[default]
    Zstd,
    /// Snappy: faster to write, larger files.
    Snappy,
    /// No compression.
    Uncompressed,
}

impl SegmentCompression {
    pub(crate) fn to_parquet(self) -> Compression {
        match self {
            SegmentCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
            SegmentCompression::Snappy => Compression::SNAPPY,
            SegmentCompression::Uncompressed => Compression::UNCOMPRESSED,
        }
    }
}

/// Options of [`SegmentStore::stage`](crate::SegmentStore::stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Roll to a new segment file after this many rows (at least 1).
    pub rows_per_segment: usize,
    /// The codec of the segment files.
    pub compression: SegmentCompression,
}

impl WriteOptions {
    /// The default number of rows per segment file.
    pub const DEFAULT_ROWS_PER_SEGMENT: usize = 1_048_576;
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            rows_per_segment: Self::DEFAULT_ROWS_PER_SEGMENT,
            compression: SegmentCompression::default(),
        }
    }
}
