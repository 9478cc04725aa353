/* HTTP-date (RFC 9110 §5.6.7): the three forms a recipient must accept, and IMF-fixdate.
 * Civil-date arithmetic is done here rather than with timegm/gmtime so that no time zone
 * or locale can reach it. */
#include "cache/policy.h"

#include <time.h>

#include "cache/policy_internal.h"

static const char *const day_names[7] = { "Sunday",   "Monday", "Tuesday", "Wednesday",
                                          "Thursday", "Friday", "Saturday" };
static const char month_names[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* 9999-12-31T23:59:59Z, the last instant IMF-fixdate can write */
#define LAST_DATE INT64_C(253402300799)

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* A parse position; ok turns false at the first mismatch and stays false. */
struct cursor {
    const char *p;
    size_t left;
    bool ok;
};

static void expect(struct cursor *c, const char *lit)
{
    size_t n = strlen(lit);
    if (!c->ok || c->left < n || !equal_ci(c->p, n, lit, n)) {
        c->ok = false;
        return;
    }
    c->p += n;
    c->left -= n;
}

static int number(struct cursor *c, size_t digits)
{
    if (!c->ok || c->left < digits) {
        c->ok = false;
        return 0;
    }
    int v = 0;
    for (size_t i = 0; i < digits; i++) {
        if (c->p[i] < '0' || c->p[i] > '9') {
            c->ok = false;
            return 0;
        }
        v = v * 10 + (c->p[i] - '0');
    }
    c->p += digits;
    c->left -= digits;
    return v;
}

static int month(struct cursor *c)
{
    for (int m = 0; c->ok && c->left >= 3 && m < 12; m++) {
        if (equal_ci(c->p, 3, month_names[m], 3)) {
            c->p += 3;
            c->left -= 3;
            return m + 1;
        }
    }
    c->ok = false;
    return 0;
}

/* The three-letter day name, or with full the whole one. */
static void day_name(struct cursor *c, bool full)
{
    for (int i = 0; c->ok && i < 7; i++) {
        size_t n = full ? strlen(day_names[i]) : 3;
        if (c->left >= n && equal_ci(c->p, n, day_names[i], n)) {
            c->p += n;
            c->left -= n;
            return;
        }
    }
    c->ok = false;
}

struct civil {
    int64_t year;
    int month, day, hour, minute, second;
};

static void time_of_day(struct cursor *c, struct civil *t)
{
    t->hour = number(c, 2);
    expect(c, ":");
    t->minute = number(c, 2);
    expect(c, ":");
    t->second = number(c, 2);
}

/* RFC 850 years have two digits: the one within 50 years from now (RFC 9110 §5.6.7). */
static int64_t full_year(int yy)
{
    int64_t y, this_year;
    int m, d;
    civil_from_days((int64_t)time(NULL) / 86400, &this_year, &m, &d);
    y = this_year - this_year % 100 + yy;
    return y > this_year + 50 ? y - 100 : y;
}

int64_t http_date_parse(const char *s, size_t len)
{
    struct cursor c = { s, len, true };
    struct civil t = { 0 };
    if (len > 3 && s[3] == ',') { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        day_name(&c, false);
        expect(&c, ", ");
        t.day = number(&c, 2);
        expect(&c, " ");
        t.month = month(&c);
        expect(&c, " ");
        t.year = number(&c, 4);
        expect(&c, " ");
        time_of_day(&c, &t);
        expect(&c, " GMT");
    } else if (len > 3 && s[3] == ' ') { /* asctime: Sun Nov  6 08:49:37 1994 */
        day_name(&c, false);
        expect(&c, " ");
        t.month = month(&c);
        expect(&c, " ");
        if (c.ok && c.left > 0 && c.p[0] == ' ') {
            expect(&c, " ");
            t.day = number(&c, 1);
        } else {
            t.day = number(&c, 2);
        }
        expect(&c, " ");
        time_of_day(&c, &t);
        expect(&c, " ");
        t.year = number(&c, 4);
    } else { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        day_name(&c, true);
        expect(&c, ", ");
        t.day = number(&c, 2);
        expect(&c, "-");
        t.month = month(&c);
        expect(&c, "-");
        t.year = number(&c, 2);
        expect(&c, " ");
        time_of_day(&c, &t);
        expect(&c, " GMT");
        if (c.ok)
            t.year = full_year((int)t.year);
    }
    if (!c.ok || c.left != 0 || t.day < 1 || t.day > days_in_month(t.year, t.month) ||
        t.hour > 23 || t.minute > 59 || t.second > 60)
        return -1;
    /* A leap second has no POSIX time; the instant before it is the nearest earlier one
     * (RFC 9111 §4.2). */
    if (t.second == 60)
        t.second = 59;
    int64_t secs = days_from_civil(t.year, t.month, t.day) * 86400 + t.hour * 3600 +
                   t.minute * 60 + t.second;
    return secs > 0 ? secs : 0;
}

static char *put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

size_t http_date_format(int64_t t, char out[30])
{
    if (t < 0)
        t = 0;
    if (t > LAST_DATE)
        t = LAST_DATE;
    int64_t days = t / 86400, secs = t % 86400, year;
    int month_no, day;
    civil_from_days(days, &year, &month_no, &day);
    char *p = out;
    memcpy(p, day_names[(days + 4) % 7], 3); /* 1970-01-01 was a Thursday */
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    p = put2(p, day);
    *p++ = ' ';
    memcpy(p, month_names[month_no - 1], 3);
    p += 3;
    *p++ = ' ';
    p = put2(p, (int)(year / 100));
    p = put2(p, (int)(year % 100));
    *p++ = ' ';
    p = put2(p, (int)(secs / 3600));
    *p++ = ':';
    p = put2(p, (int)(secs / 60 % 60));
    *p++ = ':';
    p = put2(p, (int)(secs % 60));
    memcpy(p, " GMT", 5);
    return 29;
}
