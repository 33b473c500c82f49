//! The JPEG family (ISO 10918) through libjpeg-turbo 3.1: baseline 8-bit, extended 12-bit
//! (process 4, common for CR/DX and not decoded by dicom-rs's own codec), and lossless
//! (processes 14 and 14 SV1, 2 to 16 bits).
//!
//! libjpeg-turbo is built from source by `turbojpeg-sys` and linked statically. It is asked to
//! stop on warnings, because its warnings ("premature end of data", "corrupt data") mean it
//! filled in pixels it did not have, and a wrong image is worse than no image.

use super::header::PixelEncoding;
use super::DecodeError;
use turbojpeg_sys as tj;

/// A TurboJPEG decompressor handle, destroyed on drop.
struct Decompressor(tj::tjhandle);

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

impl Decompressor {
    fn new() -> Result<Self, String> {
        // SAFETY: plain constructor; a null handle is checked.
        let handle = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
        if handle.is_null() {
            return Err("libjpeg-turbo could not allocate a decompressor".into());
        }
        Ok(Decompressor(handle))
    }

    fn set(&self, param: tj::TJPARAM, value: i32) -> Result<(), String> {
        // SAFETY: valid handle; parameters are plain integers.
        if unsafe { tj::tj3Set(self.0, param as i32, value) } != 0 {
            return Err(self.last_error());
        }
        Ok(())
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: valid handle.
        unsafe { tj::tj3Get(self.0, param as i32) }
    }

    fn last_error(&self) -> String {
        // SAFETY: libjpeg-turbo returns a NUL-terminated string owned by the handle.
        let message = unsafe { std::ffi::CStr::from_ptr(tj::tj3GetErrorStr(self.0)) };
        message.to_string_lossy().into_owned()
    }

    /// Runs one of the tj3Decompress functions and maps its status to an error.
    fn check(&self, status: i32) -> Result<(), String> {
        if status != 0 {
            return Err(self.last_error());
        }
        Ok(())
    }
}

/// Decodes one JPEG codestream to little-endian samples of the header's Bits Allocated.
pub(crate) fn decode_frame(
    codestream: &[u8],
    encoding: &PixelEncoding,
) -> Result<Vec<u8>, DecodeError> {
    decode(codestream, encoding)
        .map_err(|reason| DecodeError::codec(&encoding.transfer_syntax, reason))
}

fn decode(codestream: &[u8], encoding: &PixelEncoding) -> Result<Vec<u8>, String> {
    let d = Decompressor::new()?;
    d.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
    d.set(
        tj::TJPARAM_TJPARAM_MAXPIXELS,
        (encoding.rows * encoding.columns) as i32,
    )?;
    // SAFETY: the buffer and its length describe a live slice.
    let status = unsafe {
        tj::tj3DecompressHeader(d.0, codestream.as_ptr(), codestream.len() as tj::size_t)
    };
    d.check(status)
        .map_err(|e| format!("bad JPEG header: {e}"))?;
    let width = d.get(tj::TJPARAM_TJPARAM_JPEGWIDTH);
    let height = d.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT);
    if width as u32 != encoding.columns || height as u32 != encoding.rows {
        return Err(format!(
            "the JPEG image is {width} x {height}, but the header says {} x {}",
            encoding.columns, encoding.rows
        ));
    }
    if d.get(tj::TJPARAM_TJPARAM_COLORSPACE) != tj::TJCS_TJCS_GRAY as i32 {
        return Err("the JPEG image is not greyscale (more than one component)".into());
    }
    let precision = d.get(tj::TJPARAM_TJPARAM_PRECISION);
    if precision < 2 || precision > encoding.bits_allocated as i32 {
        return Err(format!(
            "the JPEG precision is {precision} bits, which does not fit Bits Allocated {}",
            encoding.bits_allocated
        ));
    }
    let pixels = (width as usize) * (height as usize);
    let gray = tj::TJPF_TJPF_GRAY;
    let samples: Vec<u16> = if precision <= 8 {
        let mut out = vec![0u8; pixels];
        // SAFETY: `out` holds width x height one-byte samples; pitch is the row length.
        let status = unsafe {
            tj::tj3Decompress8(
                d.0,
                codestream.as_ptr(),
                codestream.len() as tj::size_t,
                out.as_mut_ptr(),
                width,
                gray,
            )
        };
        d.check(status)?;
        if encoding.bits_allocated == 8 {
            return Ok(out);
        }
        out.into_iter().map(u16::from).collect()
    } else if precision <= 12 {
        let mut out = vec![0i16; pixels];
        // SAFETY: as above, with two-byte samples.
        let status = unsafe {
            tj::tj3Decompress12(
                d.0,
                codestream.as_ptr(),
                codestream.len() as tj::size_t,
                out.as_mut_ptr(),
                width,
                gray,
            )
        };
        d.check(status)?;
        out.into_iter().map(|v| v as u16).collect()
    } else {
        let mut out = vec![0u16; pixels];
        // SAFETY: as above.
        let status = unsafe {
            tj::tj3Decompress16(
                d.0,
                codestream.as_ptr(),
                codestream.len() as tj::size_t,
                out.as_mut_ptr(),
                width,
                gray,
            )
        };
        d.check(status)?;
        out
    };
    let width = encoding.bits_allocated as usize / 8;
    let mut bytes = vec![0u8; samples.len() * width];
    for (out, &v) in bytes.chunks_exact_mut(width).zip(&samples) {
        out[..2].copy_from_slice(&v.to_le_bytes());
    }
    Ok(bytes)
}
