// Wall-clock times in a named time zone (a cohort's), without a date library.

/**
 * @param {string} zone IANA name
 * @param {Date} date
 */
function offsetMinutes(zone, date) {
  // "GMT+01:00" / "GMT-03:30" / "GMT" for the zone at that instant.
  const part = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "longOffset" })
    .formatToParts(date)
    .find((p) => p.type === "timeZoneName").value;
  const match = /GMT([+-])(\d{2}):(\d{2})/.exec(part);
  if (!match) return 0;
  const minutes = Number(match[2]) * 60 + Number(match[3]);
  return match[1] === "-" ? -minutes : minutes;
}

/** @param {number} n */
function pad(n) {
  return String(Math.abs(n)).padStart(2, "0");
}

/**
 * "2026-11-02" + "09:00" in `zone` as an ISO string with its UTC offset
 * ("2026-11-02T09:00:00+01:00"), as the API wants it.
 * @param {string} day
 * @param {string} time "HH:MM"
 * @param {string} zone
 */
export function zonedIso(day, time, zone) {
  const wall = Date.parse(`${day}T${time}:00Z`);
  // The offset at the instant itself; twice, in case the first guess fell across a DST change.
  let offset = offsetMinutes(zone, new Date(wall));
  offset = offsetMinutes(zone, new Date(wall - offset * 60000));
  const sign = offset < 0 ? "-" : "+";
  return `${day}T${time}:00${sign}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
}

/**
 * Format an instant in `zone` (Intl options).
 * @param {string} iso
 * @param {string} zone
 * @param {string} lang
 * @param {Intl.DateTimeFormatOptions} options
 */
export function inZone(iso, zone, lang, options) {
  return new Intl.DateTimeFormat(lang, { ...options, timeZone: zone }).format(new Date(iso));
}
