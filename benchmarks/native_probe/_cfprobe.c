/*
 * A probe, not part of curlfault: the hot path of Tracker(leaks=True) written in C, to
 * measure what a compiled core would take off tracking's cost per transfer. Built on
 * demand by benchmarks/native_probe.py (never by the package's install), imported only by
 * that script.
 *
 * What it does, for a handle made while begin() is in force, is the leaks-only fast path
 * of curlfault's TrackedCurl and TrackWiring:
 *   - the handle's type is a Python subclass of pycurl.Curl with one slot; this module
 *     replaces its tp_new and its setopt;
 *   - tp_new makes the pycurl handle, reads six frames of the stack that made it (each
 *     frame's code object and instruction offset, as curlfault's own_site() does), makes a
 *     wiring object holding that site, the tracker's state and the URL, stores it in the
 *     slot and sets it as the handle's SOCKOPTFUNCTION;
 *   - the wiring, called by pycurl as SOCKOPTFUNCTION(fd, purpose), fstat()s the
 *     descriptor and stores (inode, seq, label, url, site) under the descriptor number in
 *     the tracker's dict, the entry curlfault's Python callback stores;
 *   - setopt passes every option that is not watched straight to pycurl's own; the URL is
 *     passed down and remembered; the other watched options go to a fallback the script
 *     gives (pycurl's own setopt: the probe has no strict mode or close path to divert a
 *     client's own socket callbacks to, so one replaces tracking, as it would untracked).
 * Left out, being off the measured path: strict mode, the close-callback path, re-wiring
 * after reset() and duphandle(), the deeper walk for handles made inside a library (the
 * lookup of the innermost frame's file is done), the skip of curlfault's own frames (there
 * are none: the class's constructor is C). On the path but left out: the Site object
 * curlfault wraps the raw tuple in (the probe keeps the tuple; about 0.2 us per handle in
 * Python), and the read of the tracker's current label per socket (frozen at begin()).
 *
 * The frame walk uses CPython 3.11's public frame API by default (PyEval_GetFrame,
 * PyFrame_GetBack, PyFrame_GetCode, PyFrame_GetLasti), which turns each frame it reads into
 * a frame object. With -DCF_PROBE_INTERNAL it reads the interpreter's frames directly
 * (CPython 3.11's internal layout, which changes with each minor version): the least a walk
 * can cost.
 */
#define PY_SSIZE_T_CLEAN
#ifdef CF_PROBE_INTERNAL
#define Py_BUILD_CORE
#include <Python.h>
#include "internal/pycore_frame.h"
#else
#include <Python.h>
#include <frameobject.h>
#endif
#include <sys/stat.h>

#define FRAMES 6

typedef struct {
    PyObject_HEAD
    PyObject *open;  /* descriptor number -> entry, the tracker's dict */
    PyObject *label; /* the test the sockets are opened in */
    long long seq;
    long long made; /* handles made */
} State;

typedef struct {
    PyObject_HEAD
    State *state;
    PyObject *site;
    PyObject *url;
} Wiring;

static void state_dealloc(State *s);
static void wiring_dealloc(Wiring *w);
static PyObject *wiring_call(Wiring *w, PyObject *args, PyObject *kwargs);

static PyTypeObject StateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_cfprobe.State",
    .tp_basicsize = sizeof(State),
    .tp_dealloc = (destructor)state_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

static PyTypeObject WiringType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_cfprobe.Wiring",
    .tp_basicsize = sizeof(Wiring),
    .tp_dealloc = (destructor)wiring_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_call = (ternaryfunc)wiring_call,
};
static newfunc base_new;
static PyObject *base_setopt, *watched, *fallback_setopt, *library_files;
static PyObject *sockopt_option, *url_option, *empty;
static Py_ssize_t slot_offset = -1;
static State *current; /* set by begin(), cleared by end() */

static void
state_dealloc(State *s)
{
    Py_XDECREF(s->open);
    Py_XDECREF(s->label);
    PyObject_Free(s);
}

static void
wiring_dealloc(Wiring *w)
{
    Py_XDECREF(w->state);
    Py_XDECREF(w->site);
    Py_XDECREF(w->url);
    PyObject_Free(w);
}

/* SOCKOPTFUNCTION(fd, purpose): record the descriptor, return 0 (CURL_SOCKOPT_OK). */
static PyObject *
wiring_call(Wiring *w, PyObject *args, PyObject *kwargs)
{
    if (kwargs != NULL || PyTuple_GET_SIZE(args) != 2) {
        PyErr_SetString(PyExc_TypeError, "expected (fd, purpose)");
        return NULL;
    }
    PyObject *number = PyTuple_GET_ITEM(args, 0);
    int fd = (int)PyLong_AsLong(number);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return PyLong_FromLong(0); /* as curlfault's callback: the transfer goes on, unrecorded */
    State *s = w->state;
    PyObject *inode = PyLong_FromUnsignedLongLong((unsigned long long)st.st_ino);
    PyObject *seq = PyLong_FromLongLong(++s->seq);
    PyObject *entry = (inode && seq) ? PyTuple_Pack(5, inode, seq, s->label, w->url, w->site) : NULL;
    Py_XDECREF(inode);
    Py_XDECREF(seq);
    if (entry == NULL)
        return NULL;
    int failed = PyDict_SetItem(s->open, number, entry);
    Py_DECREF(entry);
    if (failed)
        return NULL;
    return PyLong_FromLong(0);
}

static int
put_frame(PyObject *raw, int i, PyObject *code, long lasti)
{
    PyObject *offset = PyLong_FromLong(lasti);
    if (offset == NULL)
        return -1;
    Py_INCREF(code);
    PyTuple_SET_ITEM(raw, 2 * i, code);
    PyTuple_SET_ITEM(raw, 2 * i + 1, offset);
    return 0;
}

/* (code, f_lasti) for the FRAMES innermost frames, then (None, -1) past the outermost. */
static PyObject *
walk(void)
{
    PyObject *raw = PyTuple_New(2 * FRAMES);
    if (raw == NULL)
        return NULL;
    int i = 0;
#ifdef CF_PROBE_INTERNAL
    _PyInterpreterFrame *f = PyThreadState_Get()->cframe->current_frame;
    for (; i < FRAMES; i++) {
        while (f != NULL && _PyFrame_IsIncomplete(f))
            f = f->previous;
        if (f == NULL)
            break;
        if (i == 0 && PyDict_GetItemWithError(library_files, f->f_code->co_filename) == NULL &&
            PyErr_Occurred())
            goto fail;
        if (put_frame(raw, i, (PyObject *)f->f_code,
                      _PyInterpreterFrame_LASTI(f) * (long)sizeof(_Py_CODEUNIT)))
            goto fail;
        f = f->previous;
    }
#else
    PyFrameObject *f = PyEval_GetFrame();
    Py_XINCREF(f);
    for (; i < FRAMES && f != NULL; i++) {
        PyCodeObject *code = PyFrame_GetCode(f);
        int ok = (i > 0 || PyDict_GetItemWithError(library_files, code->co_filename) != NULL ||
                  !PyErr_Occurred()) &&
                 put_frame(raw, i, (PyObject *)code, PyFrame_GetLasti(f)) == 0;
        Py_DECREF(code);
        PyFrameObject *back = ok ? PyFrame_GetBack(f) : NULL;
        Py_DECREF(f);
        f = back;
        if (!ok)
            goto fail;
    }
    Py_XDECREF(f);
#endif
    for (; i < FRAMES; i++)
        if (put_frame(raw, i, Py_None, -1))
            goto fail;
    return raw;
fail:
    Py_DECREF(raw);
    return NULL;
}

static PyObject *
tracked_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *self = base_new(type, args, kwargs);
    if (self == NULL || current == NULL)
        return self;
    Wiring *w = PyObject_New(Wiring, &WiringType);
    if (w == NULL)
        goto fail;
    current->made++;
    Py_INCREF(current);
    w->state = current;
    Py_INCREF(empty);
    w->url = empty;
    w->site = walk();
    if (w->site == NULL) {
        Py_DECREF(w);
        goto fail;
    }
    PyObject **slot = (PyObject **)((char *)self + slot_offset);
    Py_XSETREF(*slot, (PyObject *)w);
    PyObject *call[3] = {self, sockopt_option, (PyObject *)w};
    PyObject *result = PyObject_Vectorcall(base_setopt, call, 3, NULL);
    if (result == NULL)
        goto fail;
    Py_DECREF(result);
    return self;
fail:
    Py_DECREF(self);
    return NULL;
}

static PyObject *
tracked_setopt(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "setopt(option, value)");
        return NULL;
    }
    PyObject *call[3] = {self, args[0], args[1]};
    int hit = PySet_Contains(watched, args[0]);
    if (hit < 0)
        return NULL;
    if (!hit)
        return PyObject_Vectorcall(base_setopt, call, 3, NULL);
    int is_url = PyObject_RichCompareBool(args[0], url_option, Py_EQ);
    if (is_url < 0)
        return NULL;
    if (!is_url)
        return PyObject_Vectorcall(fallback_setopt, call, 3, NULL);
    PyObject *result = PyObject_Vectorcall(base_setopt, call, 3, NULL);
    PyObject *slot = *(PyObject **)((char *)self + slot_offset);
    if (result == NULL || slot == NULL || !Py_IS_TYPE(slot, &WiringType))
        return result;
    Wiring *w = (Wiring *)slot;
    PyObject *url = PyBytes_Check(args[1]) ? PyUnicode_FromEncodedObject(args[1], NULL, "replace")
                                           : (Py_INCREF(args[1]), args[1]);
    if (url == NULL) {
        Py_DECREF(result);
        return NULL;
    }
    if (PyUnicode_Check(url))
        Py_SETREF(w->url, url);
    else
        Py_DECREF(url);
    return result;
}

static PyMethodDef setopt_def = {"setopt", (PyCFunction)(void (*)(void))tracked_setopt,
                                 METH_FASTCALL, NULL};

/* install(cls, base_setopt, watched, fallback_setopt, slot_offset, library_files,
 *         SOCKOPTFUNCTION, URL): the option numbers are pycurl's, passed in. */
static PyObject *
install(PyObject *module, PyObject *args)
{
    PyTypeObject *cls;
    PyObject *setopt, *options, *fallback, *libraries, *sockopt, *url;
    Py_ssize_t offset;
    if (!PyArg_ParseTuple(args, "O!OO!OnO!O!O!", &PyType_Type, &cls, &setopt, &PyFrozenSet_Type,
                          &options, &fallback, &offset, &PyDict_Type, &libraries, &PyLong_Type,
                          &sockopt, &PyLong_Type, &url))
        return NULL;
    if (base_new != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "install() once per process");
        return NULL;
    }
    PyObject *descr = PyDescr_NewMethod(cls, &setopt_def);
    if (descr == NULL || PyObject_SetAttrString((PyObject *)cls, "setopt", descr) < 0) {
        Py_XDECREF(descr);
        return NULL;
    }
    Py_DECREF(descr);
    Py_INCREF(setopt);
    Py_INCREF(options);
    Py_INCREF(fallback);
    Py_INCREF(libraries);
    Py_INCREF(sockopt);
    Py_INCREF(url);
    sockopt_option = sockopt;
    url_option = url;
    base_setopt = setopt;
    watched = options;
    fallback_setopt = fallback;
    library_files = libraries;
    slot_offset = offset;
    base_new = cls->tp_base->tp_new;
    cls->tp_new = tracked_new;
    Py_RETURN_NONE;
}

/* begin(label, open): handles made from now on record into open. */
static PyObject *
begin(PyObject *module, PyObject *args)
{
    PyObject *label, *open;
    if (!PyArg_ParseTuple(args, "OO!", &label, &PyDict_Type, &open))
        return NULL;
    State *s = PyObject_New(State, &StateType);
    if (s == NULL)
        return NULL;
    Py_INCREF(label);
    Py_INCREF(open);
    s->label = label;
    s->open = open;
    s->seq = 0;
    s->made = 0;
    Py_XSETREF(current, s);
    Py_RETURN_NONE;
}

static PyObject *
end(PyObject *module, PyObject *unused)
{
    Py_CLEAR(current);
    Py_RETURN_NONE;
}

/* counts(): (handles made, sockets recorded) since the current begin(). */
static PyObject *
counts(PyObject *module, PyObject *unused)
{
    if (current == NULL)
        return Py_BuildValue("(ii)", 0, 0);
    return Py_BuildValue("(LL)", current->made, current->seq);
}

static PyMethodDef methods[] = {
    {"install", install, METH_VARARGS, NULL},
    {"begin", begin, METH_VARARGS, NULL},
    {"end", end, METH_NOARGS, NULL},
    {"counts", counts, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_cfprobe", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__cfprobe(void)
{
    if (PyType_Ready(&StateType) < 0 || PyType_Ready(&WiringType) < 0)
        return NULL;
    empty = PyUnicode_FromString("");
    if (empty == NULL)
        return NULL;
    return PyModule_Create(&module_def);
}
