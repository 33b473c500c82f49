//! Fuzzes what the DICOM listener reads from a peer before anything is stored: any bytes are
//! read as a stream of PDUs exactly as the listener reads them (strict, its default 64 KiB
//! maximum), and every P-DATA command fragment as a DIMSE command set. Nothing may panic, hang
//! or allocate past the PDU limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radassist::service::dicom::dimse::read_request;

fuzz_target!(|data: &[u8]| {
    let mut cursor = std::io::Cursor::new(data);
    // Each PDU read consumes its bytes; an incomplete one (Ok(None)) or an error ends the
    // stream, as it ends an association.
    while let Ok(Some(pdu)) = dicom_ul::read_pdu(&mut cursor, 65536, true) {
        if let dicom_ul::Pdu::PData { data } = pdu {
            for value in data {
                if value.value_type == dicom_ul::pdu::PDataValueType::Command {
                    let _ = read_request(&value.data);
                }
            }
        }
    }
});
