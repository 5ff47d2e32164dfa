/* The cleaner's common case in C: a dict of plain JSON values, copied.
 *
 * Every call cleans the caller's properties and context on the caller's
 * thread, and in Python that walk is most of a call's cost. This module does
 * the same walk for the values whose cleaning is fixed and simple (exact str,
 * int, bool, None, float, dict with str keys, list, tuple, set, frozenset,
 * naive or UTC datetime, date) and gives up, returning NOT_PLAIN, on anything
 * else: the Python cleaner (_clean.py) then does the whole value, so its rules
 * stay the only rules. For the values it does take, the result is exactly the
 * Python cleaner's (tests/test_speedups.py checks that with hypothesis).
 *
 * No Python code runs during the walk: types are checked exactly, so no
 * __eq__, __hash__ or __iter__ of a subclass is ever called.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>

/* Deeper than this, the Python cleaner decides (it drops containers at 64
 * levels with a warning, and a cycle is infinitely deep). */
#define PLAIN_MAX_DEPTH 48
/* Values shared many times over (a list holding itself twice, nested) would
 * make the walk exponential; past this many containers, hand over to Python,
 * which can at least be interrupted. A message holds far fewer: it is <= 32 KB. */
#define PLAIN_MAX_CONTAINERS 100000

static PyObject *NotPlain;

static PyObject *clean_value(PyObject *value, int depth, Py_ssize_t *budget);

static PyObject *
not_plain(void)
{
    return Py_NewRef(NotPlain);
}

/* A value the cleaner keeps unchanged: exact str, int, bool, None, or a finite float. */
static inline int
kept_as_is(PyObject *value)
{
    PyTypeObject *type = Py_TYPE(value);
    return type == &PyUnicode_Type || type == &PyLong_Type || type == &PyBool_Type || value == Py_None
           || (type == &PyFloat_Type && isfinite(PyFloat_AS_DOUBLE(value)));
}

/* datetime.isoformat() of a naive or UTC datetime; other zones are not plain. */
static PyObject *
format_datetime(PyObject *dt)
{
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(dt);
    const char *offset;
    if (tz == Py_None) {
        offset = "";
    }
    else if (tz == PyDateTime_TimeZone_UTC) {
        offset = "+00:00";
    }
    else {
        return not_plain();
    }
    char text[48];
    int us = PyDateTime_DATE_GET_MICROSECOND(dt);
    if (us) {
        snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06d%s",
                 PyDateTime_GET_YEAR(dt), PyDateTime_GET_MONTH(dt), PyDateTime_GET_DAY(dt),
                 PyDateTime_DATE_GET_HOUR(dt), PyDateTime_DATE_GET_MINUTE(dt),
                 PyDateTime_DATE_GET_SECOND(dt), us, offset);
    }
    else {
        snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d%s",
                 PyDateTime_GET_YEAR(dt), PyDateTime_GET_MONTH(dt), PyDateTime_GET_DAY(dt),
                 PyDateTime_DATE_GET_HOUR(dt), PyDateTime_DATE_GET_MINUTE(dt),
                 PyDateTime_DATE_GET_SECOND(dt), offset);
    }
    return PyUnicode_FromString(text);
}

static PyObject *
format_date(PyObject *d)
{
    char text[16];
    snprintf(text, sizeof text, "%04d-%02d-%02d",
             PyDateTime_GET_YEAR(d), PyDateTime_GET_MONTH(d), PyDateTime_GET_DAY(d));
    return PyUnicode_FromString(text);
}

/* A copy of the dict with every value cleaned; NOT_PLAIN if a key is not an exact str. */
static PyObject *
clean_dict(PyObject *dict, int depth, Py_ssize_t *budget)
{
    if (depth >= PLAIN_MAX_DEPTH || --*budget < 0) {
        return not_plain();
    }
    /* Copy in one go, then replace the values that change: most don't. */
    PyObject *out = PyDict_Copy(dict);
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(out, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            Py_DECREF(out);
            return not_plain();
        }
        if (kept_as_is(value)) {
            continue;
        }
        PyObject *cleaned = clean_value(value, depth + 1, budget);
        if (cleaned == NULL || cleaned == NotPlain) {
            Py_DECREF(out);
            return cleaned;
        }
        /* Replacing the value of an existing key never resizes, so iteration goes on safely. */
        Py_INCREF(key);
        int failed = PyDict_SetItem(out, key, cleaned);
        Py_DECREF(key);
        Py_DECREF(cleaned);
        if (failed) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

/* A list of the cleaned items of a list, tuple, set or frozenset (in iteration order). */
static PyObject *
clean_sequence(PyObject *seq, int depth, Py_ssize_t *budget)
{
    if (depth >= PLAIN_MAX_DEPTH || --*budget < 0) {
        return not_plain();
    }
    /* A list or tuple comes back as itself (a tuple) or a copy; a set as a new list. */
    PyObject *items = PySequence_List(seq);
    if (items == NULL) {
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyList_GET_ITEM(items, i);
        if (kept_as_is(value)) {
            continue;
        }
        PyObject *cleaned = clean_value(value, depth + 1, budget);
        if (cleaned == NULL || cleaned == NotPlain) {
            Py_DECREF(items);
            return cleaned;
        }
        PyList_SET_ITEM(items, i, cleaned); /* steals cleaned */
        Py_DECREF(value);
    }
    return items;
}

static PyObject *
clean_value(PyObject *value, int depth, Py_ssize_t *budget)
{
    if (kept_as_is(value)) {
        return Py_NewRef(value);
    }
    PyTypeObject *type = Py_TYPE(value);
    if (type == &PyFloat_Type) {
        /* NaN and infinities have no JSON form: null, as the Python cleaner does. */
        return Py_NewRef(Py_None);
    }
    if (type == &PyDict_Type) {
        return clean_dict(value, depth, budget);
    }
    if (type == &PyList_Type || type == &PyTuple_Type || type == &PySet_Type || type == &PyFrozenSet_Type) {
        return clean_sequence(value, depth, budget);
    }
    if (PyDateTime_CheckExact(value)) {
        return format_datetime(value);
    }
    if (PyDate_CheckExact(value)) {
        return format_date(value);
    }
    return not_plain();
}

static PyObject *
clean_plain(PyObject *Py_UNUSED(module), PyObject *value)
{
    if (!PyDict_CheckExact(value)) {
        return not_plain();
    }
    Py_ssize_t budget = PLAIN_MAX_CONTAINERS;
    return clean_dict(value, 0, &budget);
}

static PyMethodDef speedups_methods[] = {
    {"clean_plain", clean_plain, METH_O,
     "clean_plain(value)\n--\n\n"
     "A cleaned copy of a dict of plain JSON values, or NOT_PLAIN if it holds anything else."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "segment_core._speedups",
    .m_doc = "The cleaner's common case in C (see _clean.py for the rules).",
    .m_size = -1,
    .m_methods = speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    /* A unique object, so that no cleaned value can be mistaken for it. */
    NotPlain = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (NotPlain == NULL || PyModule_AddObjectRef(module, "NOT_PLAIN", NotPlain) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
