-- The descriptor a gate sent with an unrecognised face (wire.Unrecognised
-- descriptor, optional): little-endian float32 values sealed with
-- AES-256-GCM under the template key like the crop (associated data binds
-- school and capture_id). NULL when the gate sent none: "this is <pupil>"
-- then cannot add a gate template. Deleted with its row.
ALTER TABLE unrecognised_faces ADD COLUMN descriptor BLOB;
