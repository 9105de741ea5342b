-- City-level read views for the education department. security_invoker makes
-- them obey the caller's row-level security: the analyst sees the city, a
-- school's role sees only its own school. Days are Asia/Ho_Chi_Minh days.

CREATE FUNCTION records.city_today() RETURNS date LANGUAGE sql STABLE
  AS $$ SELECT (now() AT TIME ZONE 'Asia/Ho_Chi_Minh')::date $$;
GRANT EXECUTE ON FUNCTION records.city_today() TO citydb_school, citydb_analyst;

-- Share of schools that have pushed attendance for today.
CREATE VIEW attendance.v_reporting_today WITH (security_invoker = true) AS
SELECT records.city_today() AS day,
       count(*)                                   AS schools,
       count(*) FILTER (WHERE r.school_id IS NOT NULL) AS reporting,
       round(coalesce(count(*) FILTER (WHERE r.school_id IS NOT NULL)::numeric / nullif(count(*), 0), 0), 4) AS share
FROM records.schools s
LEFT JOIN (SELECT DISTINCT school_id FROM attendance.daily_status WHERE day = records.city_today()) r
       ON r.school_id = s.school_id;

-- Attendance rate per day, district and school level: (present + late) over
-- pupils with a final status (present, late, absent, excused).
CREATE VIEW attendance.v_rate_by_district_level WITH (security_invoker = true) AS
SELECT d.day,
       s.district_code,
       s.level,
       count(DISTINCT d.school_id)                                   AS schools,
       count(*) FILTER (WHERE d.status IN ('present', 'late'))       AS present,
       count(*) FILTER (WHERE d.status = 'absent')                   AS absent,
       count(*) FILTER (WHERE d.status = 'excused')                  AS excused,
       count(*) FILTER (WHERE d.status <> 'not_yet')                 AS expected,
       round(coalesce(count(*) FILTER (WHERE d.status IN ('present', 'late'))::numeric
             / nullif(count(*) FILTER (WHERE d.status <> 'not_yet'), 0), 0), 4) AS rate
FROM attendance.daily_status d
JOIN records.schools s ON s.school_id = d.school_id
GROUP BY d.day, s.district_code, s.level;

-- Pupils (still enrolled) without a valid 12-digit personal ID.
CREATE VIEW records.v_pupils_without_personal_id WITH (security_invoker = true) AS
SELECT p.school_id, s.district_code, p.pupil_code, p.personal_id, p.class_id, p.full_name,
       CASE WHEN p.personal_id IS NULL OR btrim(p.personal_id) = '' THEN 'missing' ELSE 'malformed' END AS problem
FROM records.pupils p
JOIN records.schools s ON s.school_id = p.school_id
WHERE p.status = 'enrolled'
  AND (p.personal_id IS NULL OR p.personal_id !~ '^[0-9]{12}$');

-- Schools whose hub has not synced for more than a day (or never).
CREATE VIEW attendance.v_sync_lagging WITH (security_invoker = true) AS
SELECT s.school_id, s.name, s.district_code, s.level,
       st.last_sync_at,
       now() - st.last_sync_at AS since_last_sync,
       st.lag_rows, st.lag_seconds
FROM records.schools s
LEFT JOIN attendance.sync_status st ON st.school_id = s.school_id
WHERE st.last_sync_at IS NULL
   OR st.last_sync_at < now() - interval '1 day'
   OR st.lag_seconds > 86400;

GRANT SELECT ON attendance.v_reporting_today, attendance.v_rate_by_district_level,
                records.v_pupils_without_personal_id, attendance.v_sync_lagging
  TO citydb_school, citydb_analyst;
