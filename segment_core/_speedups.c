/* The caller's hot path in C: the cleaner's common case, a plain track call, message ids,
 * timestamps and the engine's queue. segment_core/_native.py is its one import site.
 *
 * clean_plain:
 * Every call cleans the caller's properties and context on the caller's
 * thread, and in Python that walk is most of a call's cost. This module does
 * the same walk for the values whose cleaning is fixed and simple (exact str,
 * int, bool, None, float, dict with str keys, list, tuple, set, frozenset,
 * naive or UTC datetime, date) and gives up, returning NOT_PLAIN, on anything
 * else: the Python cleaner (_value_cleaning.py) then does the whole value, so
 * its rules stay the only rules. For the values it does take, the result is
 * exactly the Python cleaner's: both forms (the wire's, and the one a call
 * returns, where datetimes and dates stay objects), and the same charges
 * against the message's byte budget, so both stop at the same point
 * (tests/test_speedups.py checks that with hypothesis).
 *
 * No Python code runs during the walk: types are checked exactly, so no
 * __eq__, __hash__ or __iter__ of a subclass is ever called.
 *
 * build_track: the whole of build_message("track", ...) for the call most
 * services make thousands of times a second: string ids, an event name, and
 * dicts of plain values. It builds the same wire dict in the same key order,
 * encodes it with the builder's own msgspec encoder, builds the same returned
 * message (segment-analytics-python 2.4's keys, in its order) and returns the
 * same BuiltMessage; any other argument (a number or UUID id, a datetime
 * timestamp, a value the cleaner must drop or convert, an oversized message)
 * gives NOT_PLAIN, and _message_builder.py decides, so validation and its
 * errors have one home. What it saves is the Python glue between those steps,
 * about a third of a call.
 *
 * write_record: a spool record (_spool_records.encode_record) written straight into a spool
 * file's map, for every call of a client with a spool: no record object made, then copied, and
 * its CRC-32 computed by folding with carry-less multiplication where the CPU has it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <structmember.h>

/* Deeper than this, the Python cleaner decides (it drops containers at 64
 * levels with a warning, and a cycle is infinitely deep). */
#define PLAIN_MAX_DEPTH 48
/* The least JSON an entry adds to its container ('"":0' and a comma), and an item ('0' and a comma):
 * what a container is charged per entry against the message's byte budget, as _value_cleaning.py
 * charges it (DICT_ENTRY_BYTES, LIST_ITEM_BYTES). Values shared many times over (a list holding
 * itself twice, nested) are charged each time they are reached, so the walk stops within the budget
 * however the input is shaped. */
#define DICT_ENTRY_BYTES 5
#define LIST_ITEM_BYTES 2

/* How a cleaning step ended: both forms made, an exception set, or a value for the Python rules. */
enum { CLEANED = 0, FAILED = -1, NOT_PLAIN = 1 };

/* integrations, anonymousId, properties, timestamp, context, userId, type, event, messageId */
#define RETURNED_TRACK_KEYS 9
/* type, event, properties, messageId, timestamp, userId, anonymousId, context, integrations */
#define TRACK_WIRE_FIELDS 9

/* What the module keeps between calls: its own state (PEP 489 multi-phase init, m_size > 0), so each
 * module object, in each interpreter, has its own. Functions get it from their module argument, methods
 * of its types from their type (PyType_GetModuleState). */
typedef struct {
    PyObject *not_plain;           /* NOT_PLAIN: a unique object no cleaned value can be mistaken for */
    PyTypeObject *message_ids_type;
    PyTypeObject *intake_type;
    /* Set by configure() from _message_builder.py. */
    PyObject *encode_into;         /* the encode_into method of the builder's msgspec.json.Encoder */
    PyObject *encode_buffer;       /* a bytearray encode_into reuses: no buffer grown from scratch per call */
    PyObject *built_type;          /* _message_builder.BuiltMessage */
    PyObject *track_wire_type;     /* _message_builder._TrackWire */
    PyObject *track_wire_kwnames;  /* its field names, in order */
    PyObject *library_name, *library_version;
    Py_ssize_t max_message_bytes;
    PyObject *python_timestamp;    /* _message_builder._format_timestamp: the rules, and every hard case */
    long long cached_second;
    PyObject *cached_second_text;  /* "2026-11-23T13:08:42" for cached_second */
    /* Made once. Keys of the message and library dicts too: a key made from a C string on every call
     * would be allocated, decoded and hashed again each time. */
    PyObject *track_type;          /* "track" */
    PyObject *built_kwnames;       /* ("message", "data", "dropped") */
    PyObject *empty_tuple;
    PyObject *sixty_four;
    PyObject *key_type, *key_event, *key_properties, *key_message_id, *key_timestamp, *key_user_id;
    PyObject *key_anonymous_id, *key_context, *key_integrations, *key_library, *key_name, *key_version;
    /* The keys of a track call's returned message in 2.4's order (borrowed from the keys above), and
     * a dict of them all, each None, to copy. */
    PyObject *returned_track_keys[RETURNED_TRACK_KEYS];
    PyObject *returned_track_template;
    PyObject *zlib_crc32;          /* zlib.crc32: the spool record's checksum where the CPU cannot fold it */
} SpeedupsState;

/* Every PyObject * of the state, for traverse and clear. */
#define STATE_OBJECTS(X)                                                                                   \
    X(not_plain) X(message_ids_type) X(intake_type) X(encode_into) X(encode_buffer) X(built_type)          \
    X(track_wire_type) X(track_wire_kwnames)                                                                 \
    X(library_name) X(library_version) X(python_timestamp) X(cached_second_text) X(track_type)             \
    X(built_kwnames) X(empty_tuple) X(sixty_four) X(key_type) X(key_event) X(key_properties)               \
    X(key_message_id) X(key_timestamp) X(key_user_id) X(key_anonymous_id) X(key_context)                   \
    X(key_integrations) X(key_library) X(key_name) X(key_version) X(returned_track_template)           \
    X(zlib_crc32)

static inline SpeedupsState *
module_state(PyObject *module)
{
    return (SpeedupsState *)PyModule_GetState(module);
}

static int clean_value(SpeedupsState *state, PyObject *value, int depth, Py_ssize_t *budget, PyObject **wire,
                       PyObject **shown);

static PyObject *
not_plain(SpeedupsState *state)
{
    return Py_NewRef(state->not_plain);
}

/* A value the cleaner keeps unchanged: exact str, int, bool, None, or a finite float. */
static inline int
kept_as_is(PyObject *value)
{
    PyTypeObject *type = Py_TYPE(value);
    return type == &PyUnicode_Type || type == &PyLong_Type || type == &PyBool_Type || value == Py_None
           || (type == &PyFloat_Type && isfinite(PyFloat_AS_DOUBLE(value)));
}

/* Writes value as exactly `width` decimal digits ending just before `end`; returns the start. */
static char *
put_digits(char *end, int value, int width)
{
    while (width--) {
        *--end = (char)('0' + value % 10);
        value /= 10;
    }
    return end;
}

/* datetime.isoformat() of a naive or UTC datetime (other zones are not plain), or date.isoformat().
 * Written digit by digit: snprintf cost a tenth of a whole call. */
static int
format_datetime(PyObject *dt, PyObject **text_out)
{
    const char *offset = "";
    if (PyDateTime_Check(dt)) {
        PyObject *tz = PyDateTime_DATE_GET_TZINFO(dt);
        if (tz == PyDateTime_TimeZone_UTC) {
            offset = "+00:00";
        }
        else if (tz != Py_None) {
            return NOT_PLAIN;
        }
    }
    char text[40]; /* 2026-11-23T13:08:42.123456+00:00 is 32 */
    char *at = text;
    at = put_digits(at + 4, PyDateTime_GET_YEAR(dt), 4) + 4;
    *at++ = '-';
    at = put_digits(at + 2, PyDateTime_GET_MONTH(dt), 2) + 2;
    *at++ = '-';
    at = put_digits(at + 2, PyDateTime_GET_DAY(dt), 2) + 2;
    if (PyDateTime_Check(dt)) {
        *at++ = 'T';
        at = put_digits(at + 2, PyDateTime_DATE_GET_HOUR(dt), 2) + 2;
        *at++ = ':';
        at = put_digits(at + 2, PyDateTime_DATE_GET_MINUTE(dt), 2) + 2;
        *at++ = ':';
        at = put_digits(at + 2, PyDateTime_DATE_GET_SECOND(dt), 2) + 2;
        int us = PyDateTime_DATE_GET_MICROSECOND(dt);
        if (us) {
            *at++ = '.';
            at = put_digits(at + 6, us, 6) + 6;
        }
        size_t offset_length = strlen(offset);
        memcpy(at, offset, offset_length);
        at += offset_length;
    }
    *text_out = PyUnicode_FromStringAndSize(text, at - text);
    return *text_out == NULL ? FAILED : CLEANED;
}

/* Spends `size` bytes of the budget; false once it is overspent (the Python cleaner then raises). */
static inline int
charge(Py_ssize_t *budget, Py_ssize_t size)
{
    *budget -= size;
    return *budget >= 0;
}

/* The two forms of a dict: a copy with every value cleaned (*wire), and the same with datetimes and
 * dates kept (*shown: the same object, with its own reference, unless one sits inside). NOT_PLAIN if a
 * key is not an exact str, or a value is not plain. */
static int
clean_dict(SpeedupsState *state, PyObject *dict, int depth, Py_ssize_t *budget, PyObject **wire_out,
           PyObject **shown_out)
{
    if (depth >= PLAIN_MAX_DEPTH || !charge(budget, DICT_ENTRY_BYTES * PyDict_GET_SIZE(dict))) {
        return NOT_PLAIN;
    }
    /* Copy in one go, then replace the values that change: most don't. */
    PyObject *wire = PyDict_Copy(dict);
    if (wire == NULL) {
        return FAILED;
    }
    PyObject *shown = NULL; /* made at the first value whose forms differ, from the wire form so far */
    int status = CLEANED;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(wire, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            status = NOT_PLAIN;
            break;
        }
        if (kept_as_is(value)) {
            continue;
        }
        PyObject *wire_value, *shown_value;
        status = clean_value(state, value, depth + 1, budget, &wire_value, &shown_value);
        if (status != CLEANED) {
            break;
        }
        int failed = 0;
        if (shown == NULL && shown_value != wire_value) {
            shown = PyDict_Copy(wire);
            failed = shown == NULL;
        }
        /* Replacing the value of an existing key never resizes, so iteration goes on safely. */
        Py_INCREF(key);
        failed = failed || PyDict_SetItem(wire, key, wire_value)
                 || (shown != NULL && PyDict_SetItem(shown, key, shown_value));
        Py_DECREF(key);
        Py_DECREF(wire_value);
        Py_DECREF(shown_value);
        if (failed) {
            status = FAILED;
            break;
        }
    }
    if (status != CLEANED) {
        Py_DECREF(wire);
        Py_XDECREF(shown);
        return status;
    }
    *wire_out = wire;
    *shown_out = shown != NULL ? shown : Py_NewRef(wire);
    return CLEANED;
}

/* The two forms of a list, tuple, set or frozenset: lists of its cleaned items (in iteration order). */
static int
clean_sequence(SpeedupsState *state, PyObject *seq, int depth, Py_ssize_t *budget, PyObject **wire_out,
               PyObject **shown_out)
{
    Py_ssize_t size = PyAnySet_Check(seq) ? PySet_GET_SIZE(seq) : Py_SIZE(seq);
    if (depth >= PLAIN_MAX_DEPTH || !charge(budget, LIST_ITEM_BYTES * size)) {
        return NOT_PLAIN;
    }
    /* A list or tuple comes back as a copy; a set as a new list. */
    PyObject *wire = PySequence_List(seq);
    if (wire == NULL) {
        return FAILED;
    }
    PyObject *shown = NULL; /* as in clean_dict */
    Py_ssize_t n = PyList_GET_SIZE(wire);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyList_GET_ITEM(wire, i);
        if (kept_as_is(value)) {
            continue;
        }
        PyObject *wire_value, *shown_value;
        int status = clean_value(state, value, depth + 1, budget, &wire_value, &shown_value);
        if (status == CLEANED && shown == NULL && shown_value != wire_value) {
            shown = PyList_GetSlice(wire, 0, n); /* item i is replaced below, in both */
            if (shown == NULL) {
                Py_DECREF(wire_value);
                Py_DECREF(shown_value);
                status = FAILED;
            }
        }
        if (status != CLEANED) {
            Py_DECREF(wire);
            Py_XDECREF(shown);
            return status;
        }
        PyList_SET_ITEM(wire, i, wire_value); /* steals wire_value */
        Py_DECREF(value);
        if (shown != NULL) {
            PyObject *old = PyList_GET_ITEM(shown, i);
            PyList_SET_ITEM(shown, i, shown_value); /* steals shown_value */
            Py_DECREF(old);
        }
        else {
            Py_DECREF(shown_value);
        }
    }
    *wire_out = wire;
    *shown_out = shown != NULL ? shown : Py_NewRef(wire);
    return CLEANED;
}

static int
clean_value(SpeedupsState *state, PyObject *value, int depth, Py_ssize_t *budget, PyObject **wire,
            PyObject **shown)
{
    if (kept_as_is(value)) {
        *wire = Py_NewRef(value);
        *shown = Py_NewRef(value);
        return CLEANED;
    }
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyFloat_Type) {
        /* NaN and infinities have no JSON form: null, as the Python cleaner does. */
        *wire = Py_NewRef(Py_None);
        *shown = Py_NewRef(Py_None);
        return CLEANED;
    }
    if (type == &PyDict_Type) {
        return clean_dict(state, value, depth, budget, wire, shown);
    }
    if (type == &PyList_Type || type == &PyTuple_Type || type == &PySet_Type || type == &PyFrozenSet_Type) {
        return clean_sequence(state, value, depth, budget, wire, shown);
    }
    if (PyDateTime_CheckExact(value) || PyDate_CheckExact(value)) {
        int status = format_datetime(value, wire);
        if (status == CLEANED) {
            *shown = Py_NewRef(value); /* the returned message keeps the caller's object, as 2.4's does */
        }
        return status;
    }
    return NOT_PLAIN;
}

/* clean_plain(value, budget): (wire, returned, budget left), or NOT_PLAIN. */
static PyObject *
clean_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    SpeedupsState *state = module_state(module);
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "clean_plain(value, budget) takes 2 arguments");
        return NULL;
    }
    Py_ssize_t budget = PyLong_AsSsize_t(args[1]);
    if (budget == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!PyDict_CheckExact(args[0])) {
        return not_plain(state);
    }
    PyObject *wire, *shown;
    int status = clean_dict(state, args[0], 0, &budget, &wire, &shown);
    if (status != CLEANED) {
        return status == FAILED ? NULL : not_plain(state);
    }
    return Py_BuildValue("(NNn)", wire, shown, budget);
}

/* The two forms of an optional dict argument: {} (one object) for None; NOT_PLAIN unless a plain dict. */
static int
plain_dict_argument(SpeedupsState *state, PyObject *value, Py_ssize_t *budget, PyObject **wire,
                    PyObject **shown)
{
    if (value == Py_None) {
        *wire = PyDict_New();
        if (*wire == NULL) {
            return FAILED;
        }
        *shown = Py_NewRef(*wire);
        return CLEANED;
    }
    if (!PyDict_CheckExact(value)) {
        return NOT_PLAIN;
    }
    return clean_dict(state, value, 0, budget, wire, shown);
}

/* An id the builder takes as it is: a non-empty exact str. */
static inline int
plain_id(PyObject *value)
{
    return PyUnicode_CheckExact(value) && PyUnicode_GET_LENGTH(value) > 0;
}

static PyObject *
library_dict(SpeedupsState *state)
{
    PyObject *library = PyDict_New();
    if (library != NULL
        && (PyDict_SetItem(library, state->key_name, state->library_name)
            || PyDict_SetItem(library, state->key_version, state->library_version))) {
        Py_CLEAR(library);
    }
    return library;
}

/* _message_builder._format_timestamp(wall) for a finite wall within years 1-9999: calls come many to a second,
 * so the second's text is kept and only the milliseconds are written. The rounding is Python's:
 * microseconds rounded half to even (nearbyint), then truncated to milliseconds. Anything else,
 * and each new second, goes to the Python function. */
static PyObject *
state_timestamp_text(SpeedupsState *state, PyObject *wall_object)
{
    if (state->python_timestamp == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "timestamp_text: configure() was not called");
        return NULL;
    }
    double wall = PyFloat_AsDouble(wall_object);
    if (wall == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    /* 0001-01-01 and 9999-12-31T23:59:59 in epoch seconds: outside them Python raises. */
    if (!(wall >= -62135596800.0 && wall < 253402300799.0)) {
        return PyObject_CallOneArg(state->python_timestamp, wall_object);
    }
    double second_floor = floor(wall);
    long long second = (long long)second_floor;
    long long us = (long long)nearbyint((wall - second_floor) * 1e6);
    if (us >= 1000000) {
        second += 1;
        us -= 1000000;
    }
    if (state->cached_second_text == NULL || second != state->cached_second) {
        PyObject *text = PyObject_CallOneArg(state->python_timestamp, wall_object);
        if (text == NULL) {
            return NULL;
        }
        /* Its last 10 characters are ".mmm+00:00": the rest is the second's. */
        PyObject *prefix = PyUnicode_Substring(text, 0, PyUnicode_GET_LENGTH(text) - 10);
        if (prefix == NULL) {
            Py_DECREF(text);
            return NULL;
        }
        Py_XSETREF(state->cached_second_text, prefix);
        state->cached_second = second;
        return text;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(state->cached_second_text);
    PyObject *text = PyUnicode_New(length + 10, 127);
    if (text == NULL) {
        return NULL;
    }
    char *out = (char *)PyUnicode_1BYTE_DATA(text);
    memcpy(out, PyUnicode_1BYTE_DATA(state->cached_second_text), (size_t)length);
    out += length;
    *out++ = '.';
    put_digits(out + 3, (int)(us / 1000), 3);
    memcpy(out + 3, "+00:00", 6);
    return text;
}

static PyObject *
timestamp_text(PyObject *module, PyObject *wall_object)
{
    return state_timestamp_text(module_state(module), wall_object);
}

/* The returned message of a track call: segment-analytics-python 2.4's keys in its order, None where
 * an id is absent. A copy of a template with those keys: no resizing as it fills, and every value is
 * then a replacement. */
static PyObject *
returned_track(SpeedupsState *state, PyObject *const values[RETURNED_TRACK_KEYS])
{
    PyObject *returned = PyDict_Copy(state->returned_track_template);
    if (returned == NULL) {
        return NULL;
    }
    for (int i = 0; i < RETURNED_TRACK_KEYS; i++) {
        if (PyDict_SetItem(returned, state->returned_track_keys[i], values[i])) {
            Py_DECREF(returned);
            return NULL;
        }
    }
    return returned;
}

static PyObject *
build_track(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    SpeedupsState *state = module_state(module);
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "build_track takes 9 arguments");
        return NULL;
    }
    if (state->encode_into == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "build_track: configure() was not called");
        return NULL;
    }
    PyObject *user_id = args[0], *event = args[1], *properties = args[2], *context = args[3];
    PyObject *anonymous_id = args[4], *integrations = args[5], *message_id = args[6];
    PyObject *wall = args[7], *new_message_id = args[8];
    int has_user = user_id != Py_None, has_anonymous = anonymous_id != Py_None; /* else None, as the Struct omits */
    if ((has_user && !plain_id(user_id)) || (has_anonymous && !plain_id(anonymous_id))
        || !(has_user || has_anonymous) || !PyUnicode_CheckExact(event)
        || (message_id != Py_None && !plain_id(message_id))) {
        return not_plain(state);
    }
    /* The three dict arguments, each in its wire form and its returned form. */
    PyObject *wire[3] = {NULL, NULL, NULL}, *shown[3] = {NULL, NULL, NULL};
    PyObject *msg = NULL, *id = NULL, *encoded = NULL, *data = NULL, *library = NULL, *returned = NULL;
    PyObject *result = NULL;
    PyObject *timestamp = state_timestamp_text(state, wall);
    if (timestamp == NULL) {
        return NULL;
    }
    /* Cleaned in build_message's order against one budget; the first that is not plain (or fails) ends it. */
    Py_ssize_t budget = state->max_message_bytes;
    PyObject *given[3] = {properties, context, integrations};
    for (int i = 0; i < 3; i++) {
        int status = plain_dict_argument(state, given[i], &budget, &wire[i], &shown[i]);
        if (status != CLEANED) {
            result = status == FAILED ? NULL : not_plain(state);
            goto done;
        }
    }
    PyObject *props = wire[0], *ctx = wire[1], *integ = wire[2];
    /* A fresh library dict each time: the caller may mutate the returned message. */
    library = library_dict(state);
    if (library == NULL || PyDict_SetItem(ctx, state->key_library, library)
        || (shown[1] != ctx && PyDict_SetItem(shown[1], state->key_library, library))) {
        goto done;
    }
    id = message_id == Py_None ? PyObject_CallNoArgs(new_message_id) : Py_NewRef(message_id);
    if (id == NULL) {
        goto done;
    }
    /* The wire message as a _TrackWire Struct: build_message's keys in its order, an absent id left
     * out (omit_defaults), so the JSON is byte for byte the same as its dict's. Cheaper to make and
     * to encode than a dict: its keys are encoded once, when the type is made. */
    PyObject *wire_values[TRACK_WIRE_FIELDS] = {
        state->track_type, event, props, id, timestamp, user_id, anonymous_id, ctx, integ,
    };
    msg = PyObject_Vectorcall(state->track_wire_type, wire_values, 0, state->track_wire_kwnames);
    if (msg == NULL) {
        goto done;
    }
    /* Encoded into one reused bytearray (the GIL is held from here to the copy, and plain values
     * run no Python code), then copied to exact-size bytes: what a queued message holds. */
    PyObject *encode_args[2] = {msg, state->encode_buffer};
    encoded = PyObject_Vectorcall(state->encode_into, encode_args, 2, NULL);
    if (encoded == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear(); /* lone surrogates, an int too long to print: the builder scrubs or refuses */
            result = not_plain(state);
        }
        goto done;
    }
    Py_ssize_t size = PyByteArray_GET_SIZE(state->encode_buffer);
    if (size > state->max_message_bytes) {
        result = not_plain(state); /* the builder raises MessageTooLarge */
        goto done;
    }
    data = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(state->encode_buffer), size);
    if (data == NULL) {
        goto done;
    }
    /* integrations, anonymousId, properties, timestamp, context, userId, type, event, messageId */
    PyObject *returned_values[RETURNED_TRACK_KEYS] = {
        shown[2], anonymous_id, shown[0], timestamp, shown[1], user_id, state->track_type, event, id,
    };
    returned = returned_track(state, returned_values);
    if (returned == NULL) {
        goto done;
    }
    PyObject *values[3] = {returned, data, state->empty_tuple};
    result = PyObject_Vectorcall(state->built_type, values, 0, state->built_kwnames);
done:
    Py_DECREF(timestamp);
    for (int i = 0; i < 3; i++) {
        Py_XDECREF(wire[i]);
        Py_XDECREF(shown[i]);
    }
    Py_XDECREF(library);
    Py_XDECREF(id);
    Py_XDECREF(msg);
    Py_XDECREF(encoded);
    Py_XDECREF(data);
    Py_XDECREF(returned);
    return result;
}

/* Writes the low `bytes` bytes of word at `at` as 2 * bytes lower-case hex digits, most significant first. */
static inline void
put_hex_word(char *at, unsigned long long word, int bytes)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = bytes - 1; i >= 0; i--) {
        at[2 * i] = hex[(word >> 4) & 0xF];
        at[2 * i + 1] = hex[word & 0xF];
        word >>= 8;
    }
}

/* The UUID4 text of 128 bits given as two words: version and variant set, 32 hex digits with dashes. */
static PyObject *
uuid4_from_words(unsigned long long high, unsigned long long low)
{
    high = (high & ~0xF000ULL) | 0x4000ULL;                             /* version 4 */
    low = (low & ~(0xC000ULL << 48)) | (0x8000ULL << 48);              /* RFC 4122 variant */
    PyObject *text = PyUnicode_New(36, 127);
    if (text == NULL) {
        return NULL;
    }
    /* 8-4-4-4-12 hex digits: the high word gives the first three groups, the low word the rest. */
    char *at = (char *)PyUnicode_1BYTE_DATA(text);
    put_hex_word(at, high >> 32, 4);
    at[8] = '-';
    put_hex_word(at + 9, (high >> 16) & 0xFFFF, 2);
    at[13] = '-';
    put_hex_word(at + 14, high & 0xFFFF, 2);
    at[18] = '-';
    put_hex_word(at + 19, low >> 48, 2);
    at[23] = '-';
    put_hex_word(at + 24, low & 0xFFFFFFFFFFFFULL, 6);
    return text;
}

/* str(uuid.UUID(int=bits & (2**128 - 1), version=4)): set the version and variant bits, then write
 * 32 hex digits with dashes. For the messageId of every call; Python's int and str steps cost
 * about a fifth of a whole track call. */
static PyObject *
uuid4_text(PyObject *module, PyObject *bits)
{
    if (!PyLong_Check(bits)) {
        PyErr_SetString(PyExc_TypeError, "uuid4_text takes an int");
        return NULL;
    }
    PyObject *high_bits = PyNumber_Rshift(bits, module_state(module)->sixty_four);
    if (high_bits == NULL) {
        return NULL;
    }
    /* The Mask conversions take the low 64 bits of any int, as & does. */
    unsigned long long high = PyLong_AsUnsignedLongLongMask(high_bits);
    Py_DECREF(high_bits);
    unsigned long long low = PyLong_AsUnsignedLongLongMask(bits);
    if (PyErr_Occurred()) {
        return NULL;
    }
    return uuid4_from_words(high, low);
}

/* message_ids(random_bytes): a callable giving a UUID4 text per call, from 16 bytes of
 * random_bytes(4096) at a time. A client's messageId source is called once a call: a Python
 * method, getrandbits(128) and its int cost about a twentieth of a whole call, and the OS's
 * random bytes (what uuid4() uses) come cheaper in bulk. Taking 16 bytes never runs Python code,
 * so under the GIL no two calls get the same bytes; a refill may run other threads, each then
 * refills with bytes of its own. */
#define ID_BYTES 16
#define ID_BYTES_PER_DRAW 4096

typedef struct {
    PyObject_HEAD
    PyObject *random_bytes;
    PyObject *drawn;  /* bytes from random_bytes, or NULL before the first call */
    Py_ssize_t used;  /* how many of them ids took */
    vectorcallfunc vectorcall;
} MessageIds;

static unsigned long long
big_endian_word(const unsigned char *at)
{
    unsigned long long word = 0;
    for (int i = 0; i < 8; i++) {
        word = word << 8 | at[i];
    }
    return word;
}

static PyObject *
message_ids_next(PyObject *self, PyObject *const *Py_UNUSED(args), size_t nargsf, PyObject *kwnames)
{
    MessageIds *source = (MessageIds *)self;
    if (PyVectorcall_NARGS(nargsf) != 0 || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_SetString(PyExc_TypeError, "a message id source takes no arguments");
        return NULL;
    }
    if (source->drawn == NULL || source->used + ID_BYTES > PyBytes_GET_SIZE(source->drawn)) {
        if (source->random_bytes == NULL) { /* cleared by the garbage collector breaking a cycle */
            PyErr_SetString(PyExc_RuntimeError, "this message id source was cleared");
            return NULL;
        }
        PyObject *per_draw = PyLong_FromLong(ID_BYTES_PER_DRAW); /* once per 256 ids */
        if (per_draw == NULL) {
            return NULL;
        }
        PyObject *drawn = PyObject_CallOneArg(source->random_bytes, per_draw);
        Py_DECREF(per_draw);
        if (drawn == NULL) {
            return NULL;
        }
        if (!PyBytes_CheckExact(drawn) || PyBytes_GET_SIZE(drawn) < ID_BYTES) {
            Py_DECREF(drawn);
            PyErr_SetString(PyExc_TypeError, "random_bytes(n) must return at least 16 bytes");
            return NULL;
        }
        Py_XSETREF(source->drawn, drawn);
        source->used = 0;
    }
    const unsigned char *at = (const unsigned char *)PyBytes_AS_STRING(source->drawn) + source->used;
    source->used += ID_BYTES;
    return uuid4_from_words(big_endian_word(at), big_endian_word(at + 8));
}

static int
message_ids_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self)); /* a heap type: its instances keep it alive */
    Py_VISIT(((MessageIds *)self)->random_bytes);
    return 0;
}

static int
message_ids_clear(PyObject *self)
{
    Py_CLEAR(((MessageIds *)self)->random_bytes);
    return 0;
}

static void
message_ids_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    message_ids_clear(self);
    Py_CLEAR(((MessageIds *)self)->drawn);
    PyObject_GC_Del(self);
    Py_DECREF(type);
}

static PyObject *
message_ids_repr(PyObject *Py_UNUSED(self))
{
    return PyUnicode_FromString("<message id source>");
}

static PyMemberDef message_ids_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(MessageIds, vectorcall), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot message_ids_slots[] = {
    {Py_tp_call, PyVectorcall_Call},
    {Py_tp_traverse, message_ids_traverse},
    {Py_tp_clear, message_ids_clear},
    {Py_tp_dealloc, message_ids_dealloc},
    {Py_tp_repr, message_ids_repr},
    {Py_tp_members, message_ids_members},
    {Py_tp_doc, (void *)"A UUID4 text per call, from random bytes drawn 4096 at a time."},
    {0, NULL},
};

static PyType_Spec message_ids_spec = {
    .name = "segment_core._speedups.MessageIds",
    .basicsize = sizeof(MessageIds),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = message_ids_slots,
};

static PyObject *
message_ids(PyObject *module, PyObject *random_bytes)
{
    if (!PyCallable_Check(random_bytes)) {
        PyErr_SetString(PyExc_TypeError, "message_ids takes a callable like os.urandom");
        return NULL;
    }
    MessageIds *source = PyObject_GC_New(MessageIds, module_state(module)->message_ids_type);
    if (source == NULL) {
        return NULL;
    }
    source->random_bytes = Py_NewRef(random_bytes);
    source->drawn = NULL;
    source->used = 0;
    source->vectorcall = message_ids_next;
    PyObject_GC_Track(source);
    return (PyObject *)source;
}

/* Intake: _message_queue.PyIntake in C, the engine's queue and its batch boundaries. Engine.enqueue runs
 * once a call on the caller's thread and is nothing but Intake.add; as Python, its attribute reads
 * and writes cost about a seventh of a whole call. _message_queue.py is the specification: the same
 * state by the same rules (tests/test_intake.py drives both with hypothesis). Under the GIL, add
 * and the takes are atomic, as the engine's callers expect: add runs no Python code once it has
 * read the state, and a take re-reads it after the one allocation that could (a collection).
 * Unlike the twin, the type is final, add takes no keywords and converts `now` to float first,
 * and the counters are read-only: the engine needs none of that. */

typedef struct {
    Py_ssize_t count;
    Py_ssize_t bytes; /* messages and the commas between them */
    double since;     /* when its first message was queued */
} FullBatch;

typedef struct {
    PyObject_HEAD
    PyObject *messages; /* a list; the queue is messages[head:] and what comes before is None */
    Py_ssize_t head;
    FullBatch *full; /* the full batches ahead of the open one: full[full_head:full_length] */
    Py_ssize_t full_head, full_length, full_capacity;
    Py_ssize_t tail_count, tail_bytes;
    double tail_since;
    long long next_seq;
    Py_ssize_t queued_bytes;
    Py_ssize_t max_messages, max_bytes, batch_size, batch_budget, max_message_bytes;
    int accepting;
    PyObject *wake, *quiet;
} Intake;

/* Room for one more full batch, made before a message is accepted so nothing can fail after. */
static int
intake_reserve_full(Intake *self)
{
    if (self->full_head == self->full_length) {
        self->full_head = self->full_length = 0;
    }
    if (self->full_length < self->full_capacity) {
        return 0;
    }
    if (self->full_head > 0) {
        memmove(self->full, self->full + self->full_head,
                (size_t)(self->full_length - self->full_head) * sizeof(FullBatch));
        self->full_length -= self->full_head;
        self->full_head = 0;
        return 0;
    }
    Py_ssize_t capacity = self->full_capacity ? self->full_capacity * 2 : 16;
    FullBatch *full = PyMem_Realloc(self->full, (size_t)capacity * sizeof(FullBatch));
    if (full == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->full = full;
    self->full_capacity = capacity;
    return 0;
}

static PyObject *
intake_add(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    Intake *self = (Intake *)op;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add(data, now) takes 2 arguments");
        return NULL;
    }
    PyObject *data = args[0];
    if (!PyBytes_CheckExact(data)) {
        PyErr_SetString(PyExc_TypeError, "data must be bytes");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[1]);
    if (now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->wake == NULL || self->quiet == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "this intake was cleared by the garbage collector");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    Py_ssize_t depth = PyList_GET_SIZE(self->messages) - self->head;
    if (size > self->max_message_bytes || !self->accepting || depth >= self->max_messages
        || self->queued_bytes + size > self->max_bytes) {
        Py_RETURN_NONE;
    }
    if (intake_reserve_full(self) < 0 || PyList_Append(self->messages, data) < 0) {
        return NULL;
    }
    self->queued_bytes += size;
    self->next_seq += 1;
    Py_ssize_t tail_count = self->tail_count;
    if (tail_count && self->tail_bytes + 1 + size > self->batch_budget) {
        /* The open batch cannot take this message: it is full, this one opens the next. */
        self->full[self->full_length++] = (FullBatch){tail_count, self->tail_bytes, self->tail_since};
        self->tail_count = 1;
        self->tail_bytes = size;
        self->tail_since = now;
        return Py_NewRef(self->wake);
    }
    if (!tail_count) {
        self->tail_since = now;
    }
    Py_ssize_t tail_bytes = tail_count ? self->tail_bytes + size + 1 : size;
    if (tail_count + 1 == self->batch_size) {
        self->full[self->full_length++] = (FullBatch){tail_count + 1, tail_bytes, self->tail_since};
        self->tail_count = self->tail_bytes = 0;
        return Py_NewRef(self->wake);
    }
    self->tail_count = tail_count + 1;
    self->tail_bytes = tail_bytes;
    return Py_NewRef(depth == 0 ? self->wake : self->quiet);
}

/* The first batch as take_batch finds it: a full one recorded by add, else the whole queue. */
static FullBatch
intake_first_batch(Intake *self, int *from_full)
{
    *from_full = self->full_head < self->full_length;
    if (*from_full) {
        return self->full[self->full_head];
    }
    return (FullBatch){PyList_GET_SIZE(self->messages) - self->head, self->tail_bytes, 0.0};
}

/* Moves messages[head:head + count] into `taken`, leaving None behind: no allocation, no Python
 * code, so nothing can change the intake in between. */
static void
intake_move(Intake *self, PyObject *taken, Py_ssize_t count)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        PyTuple_SET_ITEM(taken, i, PyList_GET_ITEM(self->messages, self->head + i));
        PyList_SET_ITEM(self->messages, self->head + i, Py_NewRef(Py_None));
    }
    self->head += count;
    Py_ssize_t length = PyList_GET_SIZE(self->messages);
    /* Drop the spent slots once they are most of the list: amortised O(1) per message. Optional:
     * if it fails (out of memory), the slots stay until the next take. */
    if (self->head == length || (self->head >= 1024 && self->head * 2 >= length)) {
        if (PyList_SetSlice(self->messages, 0, self->head, NULL) < 0) {
            PyErr_Clear();
        }
        else {
            self->head = 0;
        }
    }
}

static PyObject *
intake_take_batch(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    Intake *self = (Intake *)op;
    int from_full, still_from_full;
    FullBatch first = intake_first_batch(self, &from_full);
    PyObject *taken;
    for (;;) {
        /* Allocating may run a collection, and finalizers that call add: read again after. */
        taken = PyTuple_New(first.count);
        if (taken == NULL) {
            return NULL;
        }
        FullBatch again = intake_first_batch(self, &still_from_full);
        if (still_from_full == from_full && again.count == first.count && again.bytes == first.bytes) {
            break;
        }
        Py_DECREF(taken); /* a finalizer added a message meanwhile */
        first = again;
        from_full = still_from_full;
    }
    intake_move(self, taken, first.count);
    if (from_full) {
        self->full_head++;
    }
    else {
        self->tail_count = self->tail_bytes = 0; /* the open batch was the whole queue */
    }
    if (first.count) {
        self->queued_bytes -= first.bytes + 1 - first.count;
    }
    return taken;
}

static PyObject *
intake_take_all(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    Intake *self = (Intake *)op;
    Py_ssize_t count = PyList_GET_SIZE(self->messages) - self->head;
    PyObject *taken;
    for (;;) {
        taken = PyTuple_New(count); /* as in take_batch: read again after allocating */
        if (taken == NULL) {
            return NULL;
        }
        Py_ssize_t again = PyList_GET_SIZE(self->messages) - self->head;
        if (again == count) {
            break;
        }
        Py_DECREF(taken); /* a finalizer added a message meanwhile */
        count = again;
    }
    intake_move(self, taken, count);
    self->full_head = self->full_length = 0;
    self->queued_bytes = self->tail_count = self->tail_bytes = 0;
    return taken;
}

static PyObject *
intake_get_depth(PyObject *op, void *Py_UNUSED(closure))
{
    Intake *self = (Intake *)op;
    return PyLong_FromSsize_t(PyList_GET_SIZE(self->messages) - self->head);
}

static PyObject *
intake_get_head_full(PyObject *op, void *Py_UNUSED(closure))
{
    Intake *self = (Intake *)op;
    return PyBool_FromLong(self->full_head < self->full_length);
}

static PyObject *
intake_get_head_since(PyObject *op, void *Py_UNUSED(closure))
{
    Intake *self = (Intake *)op;
    return PyFloat_FromDouble(self->full_head < self->full_length ? self->full[self->full_head].since
                                                                   : self->tail_since);
}

static PyObject *
intake_get_accepting(PyObject *op, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(((Intake *)op)->accepting);
}

static int
intake_set_accepting(PyObject *op, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "accepting cannot be deleted");
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    if (truth < 0) {
        return -1;
    }
    ((Intake *)op)->accepting = truth;
    return 0;
}

static PyObject *
intake_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"max_messages", "max_bytes", "batch_size", "batch_budget", "max_message_bytes",
                               "wake", "quiet", NULL};
    Py_ssize_t max_messages, max_bytes, batch_size, batch_budget, max_message_bytes;
    PyObject *wake, *quiet;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "nnnnnOO:Intake", keywords, &max_messages, &max_bytes,
                                     &batch_size, &batch_budget, &max_message_bytes, &wake, &quiet)) {
        return NULL;
    }
    Intake *self = (Intake *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->messages = PyList_New(0);
    if (self->messages == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->max_messages = max_messages;
    self->max_bytes = max_bytes;
    self->batch_size = batch_size;
    self->batch_budget = batch_budget;
    self->max_message_bytes = max_message_bytes;
    self->wake = Py_NewRef(wake);
    self->quiet = Py_NewRef(quiet);
    self->accepting = 1;
    return (PyObject *)self;
}

static int
intake_traverse(PyObject *op, visitproc visit, void *arg)
{
    Intake *self = (Intake *)op;
    Py_VISIT(Py_TYPE(op)); /* a heap type: its instances keep it alive */
    Py_VISIT(self->messages);
    Py_VISIT(self->wake);
    Py_VISIT(self->quiet);
    return 0;
}

static int
intake_clear(PyObject *op)
{
    Intake *self = (Intake *)op;
    Py_CLEAR(self->wake);
    Py_CLEAR(self->quiet);
    return 0;
}

static void
intake_dealloc(PyObject *op)
{
    Intake *self = (Intake *)op;
    PyTypeObject *type = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    intake_clear(op);
    Py_CLEAR(self->messages);
    PyMem_Free(self->full);
    type->tp_free(op);
    Py_DECREF(type);
}

static PyObject *
intake_repr(PyObject *op)
{
    Intake *self = (Intake *)op;
    return PyUnicode_FromFormat("<Intake depth=%zd bytes=%zd>", PyList_GET_SIZE(self->messages) - self->head,
                                self->queued_bytes);
}

static PyMethodDef intake_methods[] = {
    {"add", (PyCFunction)(void (*)(void))intake_add, METH_FASTCALL,
     "add(data, now)\n--\n\nQueue one encoded message: wake, quiet, or None if refused."},
    {"take_batch", intake_take_batch, METH_NOARGS,
     "take_batch()\n--\n\nRemove and return the first batch: the first full one, else the whole queue."},
    {"take_all", intake_take_all, METH_NOARGS, "take_all()\n--\n\nRemove and return every queued message."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef intake_members[] = {
    {"next_seq", T_LONGLONG, offsetof(Intake, next_seq), READONLY, "The sequence number the next message takes."},
    {"queued_bytes", T_PYSSIZET, offsetof(Intake, queued_bytes), READONLY, "The queued messages' own bytes."},
    {"max_messages", T_PYSSIZET, offsetof(Intake, max_messages), READONLY, NULL},
    {"max_bytes", T_PYSSIZET, offsetof(Intake, max_bytes), READONLY, NULL},
    {"batch_size", T_PYSSIZET, offsetof(Intake, batch_size), READONLY, NULL},
    {"batch_budget", T_PYSSIZET, offsetof(Intake, batch_budget), READONLY, NULL},
    {"max_message_bytes", T_PYSSIZET, offsetof(Intake, max_message_bytes), READONLY, NULL},
    {"wake", T_OBJECT, offsetof(Intake, wake), READONLY, NULL},
    {"quiet", T_OBJECT, offsetof(Intake, quiet), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef intake_getset[] = {
    {"depth", intake_get_depth, NULL, "Messages queued.", NULL},
    {"head_full", intake_get_head_full, NULL, "Whether the first batch is full.", NULL},
    {"head_since", intake_get_head_since, NULL, "When the first batch's first message was queued.", NULL},
    {"accepting", intake_get_accepting, intake_set_accepting, "Whether add may accept.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot intake_slots[] = {
    {Py_tp_new, intake_new},
    {Py_tp_traverse, intake_traverse},
    {Py_tp_clear, intake_clear},
    {Py_tp_dealloc, intake_dealloc},
    {Py_tp_repr, intake_repr},
    {Py_tp_methods, intake_methods},
    {Py_tp_members, intake_members},
    {Py_tp_getset, intake_getset},
    {Py_tp_doc, (void *)"The engine's queue of encoded messages and its batch boundaries "
                        "(see _message_queue.PyIntake)."},
    {0, NULL},
};

static PyType_Spec intake_spec = {
    .name = "segment_core._speedups.Intake",
    .basicsize = sizeof(Intake),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = intake_slots,
};

static PyObject *
configure(PyObject *module, PyObject *args)
{
    SpeedupsState *state = module_state(module);
    PyObject *encoder, *built_type, *track_wire_type, *name, *version, *python_timestamp;
    Py_ssize_t max_bytes;
    if (!PyArg_ParseTuple(args, "OOOUUnO:configure", &encoder, &built_type, &track_wire_type, &name, &version,
                          &max_bytes, &python_timestamp)) {
        return NULL;
    }
    PyObject *encode_into = PyObject_GetAttrString(encoder, "encode_into");
    PyObject *buffer = PyByteArray_FromStringAndSize(NULL, 0);
    PyObject *kwnames = PyTuple_Pack(TRACK_WIRE_FIELDS, state->key_type, state->key_event, state->key_properties,
                                     state->key_message_id, state->key_timestamp, state->key_user_id,
                                     state->key_anonymous_id, state->key_context, state->key_integrations);
    if (encode_into == NULL || buffer == NULL || kwnames == NULL) {
        Py_XDECREF(encode_into);
        Py_XDECREF(buffer);
        Py_XDECREF(kwnames);
        return NULL;
    }
    Py_XSETREF(state->track_wire_type, Py_NewRef(track_wire_type));
    Py_XSETREF(state->track_wire_kwnames, kwnames);
    Py_XSETREF(state->python_timestamp, Py_NewRef(python_timestamp));
    Py_CLEAR(state->cached_second_text);
    Py_XSETREF(state->encode_into, encode_into);
    Py_XSETREF(state->encode_buffer, buffer);
    Py_XSETREF(state->built_type, Py_NewRef(built_type));
    Py_XSETREF(state->library_name, Py_NewRef(name));
    Py_XSETREF(state->library_version, Py_NewRef(version));
    state->max_message_bytes = max_bytes;
    Py_RETURN_NONE;
}

/* --- write_record ---------------------------------------------------------------------------------- */

/* The record layout of _spool_records.py: magic, settled flag, length, length check, checksum, data. */
#define RECORD_MAGIC "\xffSR1"
#define RECORD_HEADER_SIZE 17
#define MAX_RECORD_DATA (1 << 20)

/* CRC-32, zlib's (reflected polynomial 0xEDB88320), of the record's data: the one part of a spool
 * append that grows with the message. zlib 1.2's crc32 runs at about 2.4 bytes per ns here, 0.4 µs
 * for a 600-byte message; carry-less multiplication (PCLMULQDQ, x86-64 since 2010) folds 64 bytes
 * per step, after Gopal et al., "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ
 * Instruction" (Intel, 2009), with its constants for this polynomial. Elsewhere, or on a CPU
 * without it, zlib.crc32 is called. tests/test_spool_records.py compares the results with zlib's. */

static uint32_t crc32_table[256];

static void
crc32_table_init(void)
{
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
        }
        crc32_table[byte] = crc;
    }
}

/* The running (inverted) CRC state after `count` more bytes, a byte at a time. */
static uint32_t
crc32_bytes(uint32_t state, const unsigned char *bytes, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        state = crc32_table[(state ^ bytes[i]) & 0xFF] ^ (state >> 8);
    }
    return state;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_CLMUL_CRC32 1

/* The running CRC state after `count` bytes, count >= 64 and a multiple of 16. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t
crc32_clmul(uint32_t state, const unsigned char *bytes, size_t count)
{
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596LL, 0x0154442bd4LL);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009eLL, 0x01751997d0LL);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124LL);
    const __m128i poly = _mm_set_epi64x(0x01f7011641LL, 0x01db710641LL);
    const __m128i low32 = _mm_setr_epi32(~0, 0, ~0, 0);

    __m128i x1 = _mm_loadu_si128((const __m128i *)(bytes + 0x00));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(bytes + 0x10));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(bytes + 0x20));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(bytes + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)state));
    bytes += 64;
    count -= 64;

    /* Four lanes of 128 bits, each folded 512 bits forward per step. */
    while (count >= 64) {
        __m128i x5 = _mm_clmulepi64_si128(x1, k1k2, 0x00);
        __m128i x6 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
        __m128i x7 = _mm_clmulepi64_si128(x3, k1k2, 0x00);
        __m128i x8 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
        x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
        x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
        x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(bytes + 0x00)));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(bytes + 0x10)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(bytes + 0x20)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(bytes + 0x30)));
        bytes += 64;
        count -= 64;
    }

    /* The four lanes folded into one, then 128 bits at a time. */
    __m128i folded = x1;
    __m128i lanes[3] = {x2, x3, x4};
    for (int i = 0; i < 3; i++) {
        __m128i low = _mm_clmulepi64_si128(folded, k3k4, 0x00);
        folded = _mm_clmulepi64_si128(folded, k3k4, 0x11);
        folded = _mm_xor_si128(_mm_xor_si128(folded, lanes[i]), low);
    }
    while (count >= 16) {
        __m128i low = _mm_clmulepi64_si128(folded, k3k4, 0x00);
        folded = _mm_clmulepi64_si128(folded, k3k4, 0x11);
        folded = _mm_xor_si128(_mm_xor_si128(folded, _mm_loadu_si128((const __m128i *)bytes)), low);
        bytes += 16;
        count -= 16;
    }

    /* 128 bits to 64, then Barrett reduction to 32. */
    __m128i x = _mm_xor_si128(_mm_srli_si128(folded, 8), _mm_clmulepi64_si128(folded, k3k4, 0x10));
    x = _mm_xor_si128(_mm_clmulepi64_si128(_mm_and_si128(x, low32), k5k0, 0x00), _mm_srli_si128(x, 4));
    __m128i t = _mm_clmulepi64_si128(_mm_and_si128(x, low32), poly, 0x10);
    t = _mm_clmulepi64_si128(_mm_and_si128(t, low32), poly, 0x00);
    return (uint32_t)_mm_extract_epi32(_mm_xor_si128(x, t), 1);
}
#endif

/* Whether crc32_clmul may run: checked once, at import. */
static int crc32_clmul_usable = 0;

static void
crc32_init(void)
{
    crc32_table_init();
#ifdef HAVE_CLMUL_CRC32
    __builtin_cpu_init();
    crc32_clmul_usable = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
}

/* zlib.crc32(bytes, seed) in C; -1 (an exception set) only where zlib had to be called and failed. */
static int64_t
crc32_of(SpeedupsState *state, PyObject *data_object, const unsigned char *bytes, size_t count, uint32_t seed)
{
    uint32_t running = ~seed;
#ifdef HAVE_CLMUL_CRC32
    if (crc32_clmul_usable) {
        size_t folded = count >= 64 ? count & ~(size_t)15 : 0;
        if (folded) {
            running = crc32_clmul(running, bytes, folded);
        }
        return (int64_t)(uint32_t)~crc32_bytes(running, bytes + folded, count - folded);
    }
#endif
    if (count < 64) {
        return (int64_t)(uint32_t)~crc32_bytes(running, bytes, count);
    }
    PyObject *seed_object = PyLong_FromUnsignedLong(seed);
    if (seed_object == NULL) {
        return -1;
    }
    PyObject *crc_args[2] = {data_object, seed_object};
    PyObject *checksum = PyObject_Vectorcall(state->zlib_crc32, crc_args, 2, NULL);
    Py_DECREF(seed_object);
    if (checksum == NULL) {
        return -1;
    }
    uint32_t value = (uint32_t)PyLong_AsUnsignedLong(checksum);
    Py_DECREF(checksum);
    return PyErr_Occurred() ? -1 : (int64_t)value;
}

static void
put_le32(unsigned char *at, uint32_t value)
{
    at[0] = (unsigned char)value;
    at[1] = (unsigned char)(value >> 8);
    at[2] = (unsigned char)(value >> 16);
    at[3] = (unsigned char)(value >> 24);
}

/* write_record(buffer, offset, data) -> int: see _spool_records.write_record, whose results it gives. */
static PyObject *
write_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "write_record() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[2], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_buffer target = {0};
    if (data.len > MAX_RECORD_DATA) {
        PyErr_Format(PyExc_ValueError, "a spool record holds at most %d bytes, got %zd", MAX_RECORD_DATA, data.len);
        goto done;
    }
    if (PyObject_GetBuffer(args[0], &target, PyBUF_WRITABLE) < 0) {
        goto done;
    }
    if (offset < 0 || offset > target.len || target.len - offset < RECORD_HEADER_SIZE + data.len) {
        result = PyLong_FromLong(-1); /* it does not fit: nothing written */
        goto done;
    }
    unsigned char length_field[4];
    put_le32(length_field, (uint32_t)data.len);
    uint32_t length_check = ~crc32_bytes(0xFFFFFFFFu, length_field, sizeof length_field);
    int64_t checksum = crc32_of(module_state(module), args[2], data.buf, (size_t)data.len, length_check);
    if (checksum < 0) {
        goto done;
    }
    unsigned char *at = (unsigned char *)target.buf + offset;
    memcpy(at, RECORD_MAGIC, 4);
    at[4] = 0x00; /* UNSETTLED */
    memcpy(at + 5, length_field, 4);
    put_le32(at + 9, length_check);
    put_le32(at + 13, (uint32_t)checksum);
    memcpy(at + RECORD_HEADER_SIZE, data.buf, (size_t)data.len);
    result = PyLong_FromSsize_t(offset + RECORD_HEADER_SIZE + data.len);
done:
    if (target.obj != NULL) {
        PyBuffer_Release(&target);
    }
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"clean_plain", (PyCFunction)(void (*)(void))clean_plain, METH_FASTCALL,
     "clean_plain(value, budget)\n--\n\n"
     "(wire form, returned form, budget left) of a dict of plain values, or NOT_PLAIN if it holds anything "
     "else or its charges pass the budget."},
    {"build_track", (PyCFunction)(void (*)(void))build_track, METH_FASTCALL,
     "build_track(user_id, event, properties, context, anonymous_id, integrations, message_id, wall, "
     "new_message_id)\n--\n\n"
     "build_message(\"track\", ...) for plain arguments, or NOT_PLAIN."},
    {"uuid4_text", uuid4_text, METH_O,
     "uuid4_text(bits)\n--\n\n"
     "str(uuid.UUID(int=bits & (2**128 - 1), version=4)), for random bits."},
    {"message_ids", message_ids, METH_O,
     "message_ids(random_bytes)\n--\n\n"
     "A callable giving a UUID4 text per call, from random_bytes(4096) 16 bytes at a time."},
    {"timestamp_text", timestamp_text, METH_O,
     "timestamp_text(wall)\n--\n\n"
     "_message_builder._format_timestamp(wall): ISO-8601 UTC with milliseconds."},
    {"write_record", (PyCFunction)(void (*)(void))write_record, METH_FASTCALL,
     "write_record(buffer, offset, data)\n--\n\n"
     "_spool_records.write_record: a spool record holding data, written into buffer at offset; the offset "
     "after it, or -1 if it does not fit."},
    {"configure", configure, METH_VARARGS,
     "configure(encoder, built_type, track_wire_type, library_name, library_version, max_message_bytes, "
     "python_timestamp)\n--\n\n"
     "What build_track and timestamp_text need from _message_builder.py."},
    {NULL, NULL, 0, NULL},
};

static int
speedups_exec(PyObject *module)
{
    SpeedupsState *state = module_state(module);
    crc32_init();
    PyDateTime_IMPORT; /* the datetime C API: a capsule of the datetime module, shared by the process */
    if (PyDateTimeAPI == NULL) {
        return -1;
    }
    /* A unique object, so that no cleaned value can be mistaken for it. */
    state->not_plain = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    state->built_kwnames = Py_BuildValue("(sss)", "message", "data", "dropped");
    state->empty_tuple = PyTuple_New(0);
    state->track_type = PyUnicode_InternFromString("track");
    state->sixty_four = PyLong_FromLong(64);
    state->message_ids_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &message_ids_spec, NULL);
    state->intake_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &intake_spec, NULL);
    PyObject *zlib = PyImport_ImportModule("zlib");
    if (zlib == NULL) {
        return -1;
    }
    state->zlib_crc32 = PyObject_GetAttrString(zlib, "crc32");
    Py_DECREF(zlib);
    if (state->not_plain == NULL || state->built_kwnames == NULL || state->empty_tuple == NULL
        || state->track_type == NULL || state->sixty_four == NULL || state->message_ids_type == NULL
        || state->intake_type == NULL || state->zlib_crc32 == NULL) {
        return -1;
    }
    struct {
        PyObject **slot;
        const char *text;
    } keys[] = {
        {&state->key_type, "type"}, {&state->key_event, "event"}, {&state->key_properties, "properties"},
        {&state->key_message_id, "messageId"}, {&state->key_timestamp, "timestamp"},
        {&state->key_user_id, "userId"}, {&state->key_anonymous_id, "anonymousId"},
        {&state->key_context, "context"}, {&state->key_integrations, "integrations"},
        {&state->key_library, "library"}, {&state->key_name, "name"}, {&state->key_version, "version"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        *keys[i].slot = PyUnicode_InternFromString(keys[i].text);
        if (*keys[i].slot == NULL) {
            return -1;
        }
    }
    PyObject *returned_keys[RETURNED_TRACK_KEYS] = {
        state->key_integrations, state->key_anonymous_id, state->key_properties, state->key_timestamp,
        state->key_context,      state->key_user_id,      state->key_type,       state->key_event,
        state->key_message_id,
    };
    state->returned_track_template = PyDict_New();
    if (state->returned_track_template == NULL) {
        return -1;
    }
    for (int i = 0; i < RETURNED_TRACK_KEYS; i++) {
        state->returned_track_keys[i] = returned_keys[i];
        if (PyDict_SetItem(state->returned_track_template, returned_keys[i], Py_None) < 0) {
            return -1;
        }
    }
    if (PyModule_AddObjectRef(module, "Intake", (PyObject *)state->intake_type) < 0
        || PyModule_AddObjectRef(module, "NOT_PLAIN", state->not_plain) < 0) {
        return -1;
    }
    return 0;
}

static int
speedups_traverse(PyObject *module, visitproc visit, void *arg)
{
    SpeedupsState *state = module_state(module);
#define VISIT_FIELD(field) Py_VISIT(state->field);
    STATE_OBJECTS(VISIT_FIELD)
#undef VISIT_FIELD
    return 0;
}

static int
speedups_clear(PyObject *module)
{
    SpeedupsState *state = module_state(module);
#define CLEAR_FIELD(field) Py_CLEAR(state->field);
    STATE_OBJECTS(CLEAR_FIELD)
#undef CLEAR_FIELD
    return 0;
}

static void
speedups_free(void *module)
{
    speedups_clear((PyObject *)module);
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "segment_core._speedups",
    .m_doc = "The caller's hot path in C (see _value_cleaning.py, _message_builder.py and _spool_records.py "
             "for the rules).",
    .m_size = sizeof(SpeedupsState),
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
    .m_traverse = speedups_traverse,
    .m_clear = speedups_clear,
    .m_free = speedups_free,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
