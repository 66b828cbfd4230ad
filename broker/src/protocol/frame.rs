//! Size-prefixed frames: a big-endian i32 length, then that many bytes. "Need more bytes" is a
//! value, not an error; a frame over `socket.request.max.bytes` (or negative) is fatal to the
//! connection, before anything is allocated for it.

use bytes::{Buf, BytesMut};

/// Outcome of looking for a frame at the front of a read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameCheck {
    /// A whole frame of this many body bytes is buffered.
    Ready(usize),
    /// More bytes are needed; the frame body will be this long if known.
    Incomplete(Option<usize>),
}

/// Why a frame is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Size prefix larger than the limit.
    #[error("frame of {size} bytes exceeds socket.request.max.bytes {max}")]
    TooLarge {
        /// Declared size.
        size: i64,
        /// The limit.
        max: usize,
    },
    /// Negative size prefix.
    #[error("negative frame size {0}")]
    Negative(i32),
}

/// Checks whether `buf` starts with a whole frame, without consuming it.
pub fn check(buf: &[u8], max: usize) -> Result<FrameCheck, FrameError> {
    if buf.len() < 4 {
        return Ok(FrameCheck::Incomplete(None));
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge {
            size: size as i64,
            max,
        });
    }
    if buf.len() - 4 >= size {
        Ok(FrameCheck::Ready(size))
    } else {
        Ok(FrameCheck::Incomplete(Some(size)))
    }
}

/// Removes a checked frame of `size` body bytes from the front of `buf`.
pub fn take(buf: &mut BytesMut, size: usize) -> BytesMut {
    buf.advance(4);
    buf.split_to(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_prefix_needs_more_bytes() {
        assert_eq!(check(&[0, 0], 100), Ok(FrameCheck::Incomplete(None)));
        assert_eq!(
            check(&[0, 0, 0, 5, 1], 100),
            Ok(FrameCheck::Incomplete(Some(5)))
        );
    }

    #[test]
    fn whole_frame_is_ready_and_taken() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 2, 7, 8, 9][..]);
        assert_eq!(check(&b, 100), Ok(FrameCheck::Ready(2)));
        assert_eq!(&take(&mut b, 2)[..], &[7, 8]);
        assert_eq!(&b[..], &[9]);
    }

    #[test]
    fn oversized_and_negative_frames_are_refused() {
        assert!(matches!(
            check(&[0x7f, 0xff, 0xff, 0xff], 1024),
            Err(FrameError::TooLarge { .. })
        ));
        assert_eq!(
            check(&[0xff, 0xff, 0xff, 0xff], 1024),
            Err(FrameError::Negative(-1))
        );
    }
}
