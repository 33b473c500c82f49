"""dicomweb-client against radassist's DICOMweb service: store, search, retrieve.

Reads a JSON job on stdin:
  {"url": ".../dicomweb", "pacs_token": ..., "reader_token": ..., "stow_files": [paths],
   "searches": {"name": {"level": "studies"|"series"|"instances", "study": uid?, "params": {...}}}}
and writes JSON on stdout: the SHA-256 of each instance as dicomweb-client sent it by STOW-RS,
the two store responses, each search's answers (as DICOM JSON), and for every instance found the
SHA-256 of its bytes as retrieved (the multipart part, unparsed), what dicomweb-client's own
retrieve_instance and retrieve_study_metadata read, and whether its frame 1 retrieved equals
pydicom's reading of the Pixel Data (native, or the first frame's fragments).
"""
import hashlib
import io
import json
import sys

import pydicom
import pydicom.encaps
from dicomweb_client.api import DICOMwebClient


def encoded(dataset):
    """A data set's bytes as DICOMwebClient.store_instances encodes it (pydicom.dcmwrite)."""
    with io.BytesIO() as b:
        pydicom.dcmwrite(b, dataset)
        return b.getvalue()


def client(url, token):
    return DICOMwebClient(url, headers={"Authorization": f"Bearer {token}"})


def value(dataset, tag):
    element = dataset.get(tag, {})
    values = element.get("Value", [])
    return values[0] if values else None


def main():
    job = json.load(sys.stdin)
    out = {}
    pacs = client(job["url"], job["pacs_token"])
    datasets = [pydicom.dcmread(path) for path in job["stow_files"]]
    sent = [encoded(ds) for ds in datasets]
    out["stow_sent"] = {
        str(ds.SOPInstanceUID): hashlib.sha256(b).hexdigest() for ds, b in zip(datasets, sent)
    }
    out["stow_response"] = pacs.store_instances(datasets).to_json_dict()
    # The same instances again: duplicates, answered as stored, not second copies.
    out["stow_again_response"] = pacs.store_instances(datasets).to_json_dict()

    reader = client(job["url"], job["reader_token"])
    out["searches"] = {}
    for name, search in job["searches"].items():
        params = search.get("params", {})
        if search["level"] == "studies":
            found = reader.search_for_studies(search_filters=params.get("filters"),
                                              fields=params.get("fields"),
                                              limit=params.get("limit"),
                                              offset=params.get("offset"))
        elif search["level"] == "series":
            found = reader.search_for_series(study_instance_uid=search.get("study"),
                                             search_filters=params.get("filters"),
                                             fields=params.get("fields"))
        else:
            found = reader.search_for_instances(study_instance_uid=search.get("study"),
                                                series_instance_uid=search.get("series"),
                                                search_filters=params.get("filters"),
                                                fields=params.get("fields"))
        out["searches"][name] = found

    out["retrieved"] = {}
    out["parsed"] = {}
    out["metadata"] = {}
    out["frames"] = {}
    for study in reader.search_for_studies():
        study_uid = value(study, "0020000D")
        for series in reader.search_for_series(study_uid):
            series_uid = value(series, "0020000E")
            for instance in reader.search_for_instances(study_uid, series_uid):
                sop_uid = value(instance, "00080018")
                # dicomweb-client sends its Host header without the port, so the Retrieve URL
                # radassist answers with (built from it) lacks it: the URL is built here.
                url = f"{job['url']}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
                assert value(instance, "00081190").endswith(url.split("/dicomweb", 1)[1])
                # The parts unparsed, through dicomweb-client's own multipart reader.
                response = reader._session.get(url, headers={
                    "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
                response.raise_for_status()
                parts = list(reader._decode_multipart_message(response, stream=False))
                out["retrieved"][sop_uid] = [hashlib.sha256(p).hexdigest() for p in parts]
                # Frame 1 as held, against pydicom's reading of the instance retrieved.
                held = pydicom.dcmread(io.BytesIO(parts[0]))
                if held.file_meta.TransferSyntaxUID.is_compressed:
                    expected = next(pydicom.encaps.generate_frames(held.PixelData,
                                                                   number_of_frames=1))
                else:
                    expected = held.PixelData
                frames = reader.retrieve_instance_frames(
                    study_uid, series_uid, sop_uid, frame_numbers=[1],
                    media_types=(("application/octet-stream", "*"),))
                out["frames"][sop_uid] = {
                    "equal": len(frames) == 1 and frames[0] == expected,
                    "bytes": len(frames[0]) if frames else 0,
                }
                parsed = reader.retrieve_instance(study_uid, series_uid, sop_uid)
                out["parsed"][sop_uid] = {
                    "SOPInstanceUID": str(parsed.SOPInstanceUID),
                    "has_pixels": "PixelData" in parsed,
                }
        for metadata in reader.retrieve_study_metadata(study_uid):
            sop_uid = value(metadata, "00080018")
            pixels = metadata.get("7FE00010", {})
            out["metadata"][sop_uid] = {
                "study": value(metadata, "0020000D"),
                "rows": value(metadata, "00280010"),
                "pixel_data": pixels,
                "as_pydicom": str(pydicom.Dataset.from_json(
                    metadata, bulk_data_uri_handler=lambda *a: b"").SOPInstanceUID),
            }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
