/*
 * safeload._speedups: the one loop the opcode walker cannot afford in Python.
 *
 * A vectorizer's vocabulary pickles as hundreds of thousands of entries
 *     SHORT_BINUNICODE <len> <text> MEMOIZE (BININT1 <1> | BININT2 <2> | BININT <4>)
 * (protocols 1-3: BINUNICODE <len4> <text> BINPUT|LONG_BINPUT <index> BININT*)
 * and the walker must know exactly where such a run ends and how many entries
 * (memo slots) it holds before the C unpickler may see it.  safeload/_walker.py
 * does the same with regular expressions when this module is not built.
 * tests/test_speedups.py holds this function to a plain-Python reading of the
 * same rule; tests/test_walker.py and tests/test_filling.py hold the compiled,
 * regex and opcode-by-opcode walks to the same result.
 *
 * A second loop, count_values, measures a batch of plain values between a MARK and its
 * SETITEMS / APPENDS / ADDITEMS (a wide dict of integers, an object array of Nones, a big
 * set): the walker takes it in one step when the container no longer keeps its items, so
 * that safeload's own cost on such files stays within the resource bound of issue 11.
 *
 * The functions only read: data[start:end] (end clamped to the buffer), one byte at a
 * time, every index checked against end before it is read.
 *
 * One more, fill(), parses nothing: it reads a file into a buffer on safeload's background-read
 * thread (safeload/_filling.py) without taking the GIL between chunks. Published from Python,
 * each chunk's progress needed the GIL, which the compiled walker holds while it works: the
 * reader then waited a switch interval (5 ms) per chunk, and the walker for it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#ifndef _WIN32
#include <unistd.h>
#define SAFELOAD_HAVE_PREAD 1
#endif

#define SHORT_BINUNICODE 0x8c
#define MEMOIZE 0x94
#define BININT1 0x4b
#define BININT2 0x4d
#define BININT 0x4a
#define BINUNICODE 0x58
#define BINPUT 0x71
#define LONG_BINPUT 0x72
#define NONE 0x4e
#define NEWTRUE 0x88
#define NEWFALSE 0x89
#define BINFLOAT 0x47
#define BINGET 0x68
#define LONG_BINGET 0x6a

/* Would CPython decode text[0:n] with "utf-8", "surrogatepass" (as the unpickler decodes
   SHORT_BINUNICODE)?  Strict UTF-8, plus the encoded surrogates ED A0..BF 80..BF. */
static int
decodes(const unsigned char *text, Py_ssize_t n)
{
    Py_ssize_t k = 0;
    while (k < n) {
        unsigned char c = text[k];
        if (c < 0x80) {
            k++;
            continue;
        }
        Py_ssize_t len;
        unsigned char lo = 0x80, hi = 0xBF;  /* the range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        }
        else if (c == 0xE0) {
            len = 3;
            lo = 0xA0;
        }
        else if (c >= 0xE1 && c <= 0xEF) {  /* ED A0..BF (surrogates) included: surrogatepass */
            len = 3;
        }
        else if (c == 0xF0) {
            len = 4;
            lo = 0x90;
        }
        else if (c >= 0xF1 && c <= 0xF3) {
            len = 4;
        }
        else if (c == 0xF4) {
            len = 4;
            hi = 0x8F;
        }
        else {
            return 0;
        }
        if (n - k < len || text[k + 1] < lo || text[k + 1] > hi) {
            return 0;
        }
        for (Py_ssize_t j = 2; j < len; j++) {
            if ((text[k + j] & 0xC0) != 0x80) {
                return 0;
            }
        }
        k += len;
    }
    return 1;
}

PyDoc_STRVAR(count_entries_doc,
"count_entries(data, start, end, /) -> (stop, count)\n\n"
"Whole vocabulary entries from data[start:] that end at or before end and whose text\n"
"decodes as the unpickler decodes it: data[start:stop] holds exactly count of them\n"
"(stop == start and count == 0 when there is none).");

static PyObject *
count_entries(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer view;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "y*nn:count_entries", &view, &start, &end)) {
        return NULL;
    }
    if (end > view.len) {
        end = view.len;
    }
    Py_ssize_t i = start;
    Py_ssize_t count = 0;
    if (start >= 0 && start <= end) {
        const unsigned char *p = (const unsigned char *)view.buf;
        for (;;) {
            /* here start <= i <= end */
            if (end - i < 2 || p[i] != SHORT_BINUNICODE) {
                break;
            }
            Py_ssize_t memo = i + 2 + p[i + 1];  /* the MEMOIZE byte after the text */
            if (end - memo < 2 || p[memo] != MEMOIZE) {
                break;
            }
            unsigned char op = p[memo + 1];
            Py_ssize_t width = op == BININT1 ? 1 : (op == BININT2 ? 2 : (op == BININT ? 4 : -1));
            if (width < 0 || end - (memo + 2) < width) {
                break;
            }
            if (!decodes(p + i + 2, p[i + 1])) {
                break;  /* left to the walker's opcode-by-opcode path, which reports it */
            }
            i = memo + 2 + width;
            count++;
        }
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nn", i, count);
}

PyDoc_STRVAR(count_put_entries_doc,
"count_put_entries(data, start, end, first, /) -> (stop, count)\n\n"
"Whole protocol 1-3 vocabulary entries (BINUNICODE <text> BINPUT|LONG_BINPUT <index>\n"
"BININT1|BININT2|BININT) from data[start:] that end at or before end, whose text decodes\n"
"as the unpickler decodes it and whose k-th PUT index is first + k: data[start:stop] holds\n"
"exactly count of them (stop == start and count == 0 when there is none).");

static PyObject *
count_put_entries(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer view;
    Py_ssize_t start, end;
    long long first;
    if (!PyArg_ParseTuple(args, "y*nnL:count_put_entries", &view, &start, &end, &first)) {
        return NULL;
    }
    if (end > view.len) {
        end = view.len;
    }
    Py_ssize_t i = start;
    Py_ssize_t count = 0;
    if (start >= 0 && start <= end && first >= 0) {
        const unsigned char *p = (const unsigned char *)view.buf;
        for (;;) {
            /* here start <= i <= end */
            if (end - i < 5 || p[i] != BINUNICODE) {
                break;
            }
            unsigned long long len = (unsigned long long)p[i + 1] | ((unsigned long long)p[i + 2] << 8)
                | ((unsigned long long)p[i + 3] << 16) | ((unsigned long long)p[i + 4] << 24);
            if ((unsigned long long)(end - (i + 5)) < len + 2) {
                break;  /* the text, a PUT opcode and at least one more byte must be in */
            }
            Py_ssize_t put = i + 5 + (Py_ssize_t)len;  /* the PUT opcode after the text */
            unsigned long long want = (unsigned long long)first + (unsigned long long)count;
            Py_ssize_t after;  /* the integer opcode after the PUT */
            if (p[put] == BINPUT) {
                if (end - put < 2 || want != p[put + 1]) {
                    break;
                }
                after = put + 2;
            }
            else if (p[put] == LONG_BINPUT) {
                if (end - put < 5) {
                    break;
                }
                unsigned long long idx = (unsigned long long)p[put + 1] | ((unsigned long long)p[put + 2] << 8)
                    | ((unsigned long long)p[put + 3] << 16) | ((unsigned long long)p[put + 4] << 24);
                if (want != idx) {
                    break;
                }
                after = put + 5;
            }
            else {
                break;
            }
            if (end - after < 1) {
                break;
            }
            unsigned char op = p[after];
            Py_ssize_t width = op == BININT1 ? 1 : (op == BININT2 ? 2 : (op == BININT ? 4 : -1));
            if (width < 0 || end - (after + 1) < width) {
                break;
            }
            if (!decodes(p + i + 5, (Py_ssize_t)len)) {
                break;  /* left to the walker's opcode-by-opcode path, which reports it */
            }
            i = after + 1 + width;
            count++;
        }
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nn", i, count);
}

PyDoc_STRVAR(count_values_doc,
"count_values(data, start, end, memo, /) -> (stop, count)\n\n"
"Whole opcodes from data[start:] that end at or before end and each push one plain value:\n"
"NONE, NEWTRUE, NEWFALSE, BININT1, BININT2, BININT, BINFLOAT and, when memo is a dict,\n"
"BINGET / LONG_BINGET of an index that is a key of memo.  data[start:stop] holds exactly\n"
"count of them (stop == start and count == 0 when there is none).");

static PyObject *
count_values(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer view;
    Py_ssize_t start, end;
    PyObject *memo;
    if (!PyArg_ParseTuple(args, "y*nnO:count_values", &view, &start, &end, &memo)) {
        return NULL;
    }
    if (memo != Py_None && !PyDict_CheckExact(memo)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "count_values: memo must be a dict or None");
        return NULL;
    }
    int gets = memo != Py_None;
    if (end > view.len) {
        end = view.len;
    }
    Py_ssize_t i = start;
    Py_ssize_t count = 0;
    long long known = -1;  /* the last memo index found in memo (a shared object is read again and again) */
    if (start >= 0 && start <= end) {
        const unsigned char *p = (const unsigned char *)view.buf;
        while (i < end) {
            /* here start <= i < end */
            unsigned char op = p[i];
            Py_ssize_t width;
            switch (op) {
            case NONE: case NEWTRUE: case NEWFALSE: width = 0; break;
            case BININT1: width = 1; break;
            case BININT2: width = 2; break;
            case BININT: width = 4; break;
            case BINFLOAT: width = 8; break;
            case BINGET: width = gets ? 1 : -1; break;
            case LONG_BINGET: width = gets ? 4 : -1; break;
            default: width = -1;
            }
            if (width < 0 || end - (i + 1) < width) {
                break;
            }
            if (op == BINGET || op == LONG_BINGET) {
                long long idx = p[i + 1];
                if (op == LONG_BINGET) {
                    idx = (long long)((unsigned long long)p[i + 1] | ((unsigned long long)p[i + 2] << 8)
                                      | ((unsigned long long)p[i + 3] << 16) | ((unsigned long long)p[i + 4] << 24));
                }
                if (idx != known) {
                    PyObject *key = PyLong_FromLongLong(idx);
                    if (key == NULL) {
                        PyBuffer_Release(&view);
                        return NULL;
                    }
                    int found = PyDict_Contains(memo, key);  /* int keys: no Python code runs */
                    Py_DECREF(key);
                    if (found < 0) {
                        PyBuffer_Release(&view);
                        return NULL;
                    }
                    if (!found) {
                        break;  /* left to the walker's opcode-by-opcode path (a lazy run, or an error) */
                    }
                    known = idx;
                }
            }
            i += 1 + width;
            count++;
        }
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("nn", i, count);
}

#ifdef SAFELOAD_HAVE_PREAD
PyDoc_STRVAR(fill_doc,
"fill(fd, buffer, size, chunk, progress, /) -> (read, errno)\n\n"
"Read bytes [0, size) of fd into buffer[0:size] with pread, chunk bytes at a time, with the\n"
"GIL released for the whole read. progress is a writable buffer of two aligned int64: after\n"
"each chunk progress[0] = bytes read so far (a release store: those bytes are in buffer before\n"
"the count says so; read it with progress()); the read stops early once progress[1] != 0\n"
"(cancel). Returns the bytes read and 0, or the errno of a failed read. Fewer than size bytes\n"
"with errno 0: the file ended early.");

static PyObject *
fill(PyObject *self, PyObject *args)
{
    int fd;
    Py_buffer buf, prog;
    Py_ssize_t size, chunk, pos = 0;
    int err = 0;

    if (!PyArg_ParseTuple(args, "iw*nnw*", &fd, &buf, &size, &chunk, &prog)) {
        return NULL;
    }
    if (size < 0 || size > buf.len || chunk <= 0 || prog.len < (Py_ssize_t)(2 * sizeof(int64_t))
            || ((uintptr_t)prog.buf % sizeof(int64_t)) != 0) {
        PyBuffer_Release(&buf);
        PyBuffer_Release(&prog);
        PyErr_SetString(PyExc_ValueError, "fill: size beyond the buffer, chunk <= 0, or a bad progress buffer");
        return NULL;
    }
    {
        char *dst = (char *)buf.buf;
        int64_t *progress = (int64_t *)prog.buf;
        Py_BEGIN_ALLOW_THREADS
        while (pos < size && __atomic_load_n(&progress[1], __ATOMIC_ACQUIRE) == 0) {
            Py_ssize_t want = size - pos < chunk ? size - pos : chunk;
            ssize_t got = pread(fd, dst + pos, (size_t)want, (off_t)pos);
            if (got < 0) {
                if (errno == EINTR) {
                    continue;
                }
                err = errno;
                break;
            }
            if (got == 0) {
                break;
            }
            pos += (Py_ssize_t)got;
            __atomic_store_n(&progress[0], (int64_t)pos, __ATOMIC_RELEASE);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&buf);
    PyBuffer_Release(&prog);
    return Py_BuildValue("ni", pos, err);
}

PyDoc_STRVAR(progress_doc,
"progress(progress, /) -> int\n\n"
"progress[0] of a fill() progress buffer, by an acquire load: the bytes it counts are visible.");

static PyObject *
progress(PyObject *self, PyObject *arg)
{
    Py_buffer prog;
    int64_t value;

    if (PyObject_GetBuffer(arg, &prog, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (prog.len < (Py_ssize_t)(2 * sizeof(int64_t)) || ((uintptr_t)prog.buf % sizeof(int64_t)) != 0) {
        PyBuffer_Release(&prog);
        PyErr_SetString(PyExc_ValueError, "progress: not a fill() progress buffer");
        return NULL;
    }
    value = __atomic_load_n((int64_t *)prog.buf, __ATOMIC_ACQUIRE);
    PyBuffer_Release(&prog);
    return PyLong_FromLongLong((long long)value);
}
#endif

PyDoc_STRVAR(tree_ok_doc,
"tree_ok(nodes, count, itemsize, left, right, feature, missing_left, n_features, max_depth, /) -> bool\n\n"
"The good case of safeload/_validators/trees.py's _check_tree in one pass: nodes is a\n"
"contiguous buffer of count records of itemsize bytes; left, right and feature are the byte\n"
"offsets of native int64 fields in a record, missing_left of a uint8 one. True exactly when\n"
"every node is a leaf (both children -1) or an internal node whose children point forward\n"
"inside the tree, whose feature is in [0, n_features) and whose missing_go_to_left is 0 or 1;\n"
"every node but the root has exactly one parent; and 0 <= max_depth < count bounds the depth\n"
"of every leaf. False means 'not shown safe here': the numpy path then decides and names the\n"
"node. Refuses (ValueError) arguments that would read outside the buffer.");

static PyObject *
tree_ok(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t count, itemsize, off_l, off_r, off_f, off_m, n_features, max_depth;
    int ok = 1;

    if (!PyArg_ParseTuple(args, "y*nnnnnnnn", &view, &count, &itemsize, &off_l, &off_r, &off_f, &off_m,
                          &n_features, &max_depth)) {
        return NULL;
    }
    if (count < 0 || itemsize <= 0 || count > view.len / itemsize
            || off_l < 0 || off_l > itemsize - 8 || off_r < 0 || off_r > itemsize - 8
            || off_f < 0 || off_f > itemsize - 8 || off_m < 0 || off_m > itemsize - 1) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "tree_ok: records or fields outside the buffer");
        return NULL;
    }
    /* depth[i]: -1 until node i's parent is seen; 2**31 nodes and more go to the numpy path. */
    if (count < 1 || count > 0x7fffffff || n_features < 1 || max_depth < 0 || max_depth >= count) {
        PyBuffer_Release(&view);
        Py_RETURN_FALSE;
    }
    int32_t *depth = PyMem_Malloc((size_t)count * sizeof(int32_t));
    if (depth == NULL) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    {
        const unsigned char *base = (const unsigned char *)view.buf;
        Py_ssize_t internal = 0;
        int release = count >= (1 << 16);
        PyThreadState *ts = release ? PyEval_SaveThread() : NULL;
        depth[0] = 0;
        for (Py_ssize_t i = 1; i < count; i++) {
            depth[i] = -1;
        }
        for (Py_ssize_t i = 0; i < count && ok; i++) {
            const unsigned char *rec = base + i * itemsize;
            int64_t l, r, f;
            memcpy(&l, rec + off_l, 8);
            memcpy(&r, rec + off_r, 8);
            if (depth[i] < 0) {  /* children point forward: its parent, if any, came first */
                ok = 0;
            }
            else if (l == -1 && r == -1) {
                ok = depth[i] <= max_depth;
            }
            else if (l <= i || r <= i || l >= count || r >= count || depth[l] >= 0 || depth[r] >= 0 || l == r) {
                ok = 0;  /* a leaf half, backwards or out of range, or a second parent */
            }
            else {
                memcpy(&f, rec + off_f, 8);
                ok = f >= 0 && f < n_features && rec[off_m] <= 1;
                depth[l] = depth[r] = depth[i] + 1;
                internal++;
            }
        }
        if (ok && 2 * internal != count - 1) {
            ok = 0;
        }
        if (release) {
            PyEval_RestoreThread(ts);
        }
    }
    PyMem_Free(depth);
    PyBuffer_Release(&view);
    return PyBool_FromLong(ok);
}

/* Two helpers for the validators (safeload/_validators/_base.py and text.py), which run on the
   model load built: a vocabulary of 10**6 entries cost ~25 ms in frozenset(map(type, ...)) and
   ~10 ms in numpy.fromiter, more than the walk of the whole file. They read Python objects, not
   bytes, and run no Python code while they iterate (hashing a type that has no metaclass is a
   pointer hash; the only types a loaded model holds are allowed ones). */

PyDoc_STRVAR(dict_types_doc,
"dict_types(d, /) -> tuple[frozenset[type], frozenset[type]]\n\n"
"(frozenset(map(type, dict.keys(d))), frozenset(map(type, dict.values(d)))) in one pass, with\n"
"one pointer comparison per element while the types repeat. RuntimeError if d changes size\n"
"meanwhile, as the Python expressions would.");

/* Add t to found unless it is *last; 0 on success. */
static int
add_type(PyObject *found, PyObject *t, PyObject **last)
{
    int rc;
    if (t == *last) {
        return 0;
    }
    Py_INCREF(t);
    rc = PySet_Add(found, t);  /* may call a metaclass __hash__ */
    Py_DECREF(t);
    if (rc == 0) {
        *last = t;  /* borrowed: the set holds a reference now */
    }
    return rc;
}

static PyObject *
dict_types(PyObject *self, PyObject *d)
{
    PyObject *key_types, *value_types, *k, *v, *out = NULL;
    PyObject *last_key = NULL, *last_value = NULL;
    Py_ssize_t pos = 0, size;

    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "dict_types: a dict is required");
        return NULL;
    }
    key_types = PySet_New(NULL);
    value_types = PySet_New(NULL);
    if (key_types == NULL || value_types == NULL) {
        goto done;
    }
    size = PyDict_GET_SIZE(d);
    while (PyDict_Next(d, &pos, &k, &v)) {
        PyObject *vt = (PyObject *)Py_TYPE(v);  /* read before a __hash__ could drop v */
        if (add_type(key_types, (PyObject *)Py_TYPE(k), &last_key) < 0
                || add_type(value_types, vt, &last_value) < 0) {
            goto done;
        }
        if (PyDict_GET_SIZE(d) != size) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            goto done;
        }
    }
    {
        PyObject *kf = PyFrozenSet_New(key_types);
        PyObject *vf = kf != NULL ? PyFrozenSet_New(value_types) : NULL;
        if (vf != NULL) {
            out = PyTuple_Pack(2, kf, vf);
        }
        Py_XDECREF(kf);
        Py_XDECREF(vf);
    }
done:
    Py_XDECREF(key_types);
    Py_XDECREF(value_types);
    return out;
}

PyDoc_STRVAR(index_map_ok_doc,
"index_map_ok(d, /) -> bool\n\n"
"True when d is a dict (exactly) whose values are Python ints (exactly: not bool) holding\n"
"0 .. len(d) - 1, each once: a vocabulary that maps terms onto columns. False means\n"
"'not shown here': text.py's numpy path then decides and names the entry.");

static PyObject *
index_map_ok(PyObject *self, PyObject *d)
{
    PyObject *k, *v;
    Py_ssize_t pos = 0, n;
    unsigned char *seen;
    int ok = 1;

    if (!PyDict_CheckExact(d)) {
        Py_RETURN_FALSE;
    }
    n = PyDict_GET_SIZE(d);
    seen = PyMem_Calloc(n > 0 ? (size_t)n : 1, 1);
    if (seen == NULL) {
        return PyErr_NoMemory();
    }
    while (ok && PyDict_Next(d, &pos, &k, &v)) {
        int overflow = 0;
        long long x;
        if (!PyLong_CheckExact(v)) {
            ok = 0;
            break;
        }
        x = PyLong_AsLongLongAndOverflow(v, &overflow);  /* an exact int: runs no Python code */
        if (overflow || x < 0 || x >= (long long)n || seen[x]) {
            ok = 0;
            break;
        }
        seen[x] = 1;
    }
    PyMem_Free(seen);
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyBool_FromLong(ok);
}

/* ---- index_census: scan's static mirror of the vocabulary check (text.py's _check_index_map) ---- */

typedef struct {
    const unsigned char *ptr;  /* the key's UTF-8 bytes: in data (a run) or in a bytes object (a pair) */
    Py_ssize_t len;
} text_ref;

static int
text_cmp(const text_ref *a, const text_ref *b)
{
    Py_ssize_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->ptr, b->ptr, (size_t)n) : 0;
    if (c != 0) {
        return c;
    }
    return a->len < b->len ? -1 : (a->len > b->len ? 1 : 0);
}

/* Bottom-up merge sort (no quicksort worst case for a crafted file); 1 if two keys are equal. */
static int
sort_finds_equal(text_ref *items, text_ref *tmp, Py_ssize_t n)
{
    for (Py_ssize_t width = 1; width < n; width *= 2) {
        for (Py_ssize_t lo = 0; lo < n; lo += 2 * width) {
            Py_ssize_t mid = lo + width < n ? lo + width : n;
            Py_ssize_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            Py_ssize_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi) {
                int c = text_cmp(&items[a], &items[b]);
                if (c == 0) {
                    return 1;
                }
                tmp[k++] = c < 0 ? items[a++] : items[b++];
            }
            while (a < mid) {
                tmp[k++] = items[a++];
            }
            while (b < hi) {
                tmp[k++] = items[b++];
            }
        }
        memcpy(items, tmp, (size_t)n * sizeof(text_ref));
    }
    return 0;
}

PyDoc_STRVAR(index_census_doc,
"index_census(data, pieces, /) -> (entries, status, bad_entry, bad_value)\n\n"
"A dict given only vocabulary entries, judged from the stream's bytes. pieces, in stream\n"
"order: (start, end, count, put) for a run as the walker took it (count_entries /\n"
"count_put_entries), (key_bytes, value) for one other entry (its str key encoded as UTF-8\n"
"with surrogatepass; a value that is not an exact int is never a column index). status 0: the keys are pairwise distinct and the values\n"
"are exactly 0 .. entries - 1 (what load's _check_index_map accepts); 1: the keys are\n"
"distinct but entry bad_entry (in stream order) holds bad_value, out of range or repeated;\n"
"2: unknown (two equal keys: the dict keeps fewer entries; or a run that does not parse as\n"
"delimited). Reads only data[start:end] of each run, every index checked against end.");

static PyObject *
index_census(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer view;
    PyObject *pieces;
    Py_ssize_t total = 0, entries = 0, bad_entry = -1;
    PyObject *bad_value = NULL;
    int status = 0;
    text_ref *texts = NULL, *tmp = NULL;
    unsigned char *seen = NULL;
    PyObject *out = NULL;

    if (!PyArg_ParseTuple(args, "y*O!:index_census", &view, &PyList_Type, &pieces)) {
        return NULL;
    }
    Py_ssize_t npieces = PyList_GET_SIZE(pieces);
    for (Py_ssize_t r = 0; r < npieces; r++) {
        PyObject *piece = PyList_GET_ITEM(pieces, r);
        Py_ssize_t start, end, count;
        int put;
        if (PyTuple_Check(piece) && PyTuple_GET_SIZE(piece) == 2) {
            if (!PyBytes_Check(PyTuple_GET_ITEM(piece, 0))) {
                PyErr_SetString(PyExc_TypeError, "index_census: a pair is (bytes, value)");
                goto done;
            }
            count = 1;
        }
        else if (!PyArg_ParseTuple(piece, "nnnp:index_census run", &start, &end, &count, &put)) {
            goto done;
        }
        if (count < 0 || count > PY_SSIZE_T_MAX / (Py_ssize_t)(2 * sizeof(text_ref)) - total) {
            PyErr_SetString(PyExc_ValueError, "index_census: bad run count");
            goto done;
        }
        total += count;
    }
    texts = PyMem_Malloc((size_t)(total ? total : 1) * sizeof(text_ref));
    tmp = PyMem_Malloc((size_t)(total ? total : 1) * sizeof(text_ref));
    seen = PyMem_Calloc((size_t)(total ? total : 1), 1);
    if (texts == NULL || tmp == NULL || seen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    {
        const unsigned char *p = (const unsigned char *)view.buf;
        for (Py_ssize_t r = 0; r < npieces && status != 2; r++) {
            PyObject *piece = PyList_GET_ITEM(pieces, r);
            Py_ssize_t start, end, count;
            int put;
            if (PyTuple_GET_SIZE(piece) == 2) {
                PyObject *key = PyTuple_GET_ITEM(piece, 0), *val = PyTuple_GET_ITEM(piece, 1);
                int overflow = 0, is_int = PyLong_CheckExact(val);
                long long value = is_int ? PyLong_AsLongLongAndOverflow(val, &overflow) : -1;  /* no code runs */
                if (status == 0 && (!is_int || overflow || value < 0 || value >= total || seen[value])) {
                    status = 1;
                    bad_entry = entries;
                    Py_INCREF(val);
                    bad_value = val;
                }
                else if (status == 0) {
                    seen[value] = 1;
                }
                texts[entries].ptr = (const unsigned char *)PyBytes_AS_STRING(key);
                texts[entries].len = PyBytes_GET_SIZE(key);
                entries++;
                continue;
            }
            (void)PyArg_ParseTuple(piece, "nnnp", &start, &end, &count, &put);
            if (end > view.len) {
                end = view.len;
            }
            if (start < 0 || start > end) {
                status = 2;
                break;
            }
            Py_ssize_t i = start;
            for (Py_ssize_t k = 0; k < count; k++) {
                Py_ssize_t tpos, tlen, after;  /* after: the integer opcode */
                if (!put) {
                    if (end - i < 2 || p[i] != SHORT_BINUNICODE) {
                        status = 2;
                        break;
                    }
                    tpos = i + 2;
                    tlen = p[i + 1];
                    if (end - tpos < tlen + 2 || p[tpos + tlen] != MEMOIZE) {
                        status = 2;
                        break;
                    }
                    after = tpos + tlen + 1;
                }
                else {
                    if (end - i < 5 || p[i] != BINUNICODE) {
                        status = 2;
                        break;
                    }
                    unsigned long long len = (unsigned long long)p[i + 1] | ((unsigned long long)p[i + 2] << 8)
                        | ((unsigned long long)p[i + 3] << 16) | ((unsigned long long)p[i + 4] << 24);
                    if ((unsigned long long)(end - (i + 5)) < len + 2) {
                        status = 2;
                        break;
                    }
                    tpos = i + 5;
                    tlen = (Py_ssize_t)len;
                    Py_ssize_t q = tpos + tlen;  /* the PUT opcode */
                    if (p[q] == BINPUT && end - q >= 3) {
                        after = q + 2;
                    }
                    else if (p[q] == LONG_BINPUT && end - q >= 6) {
                        after = q + 5;
                    }
                    else {
                        status = 2;
                        break;
                    }
                }
                unsigned char op = p[after];
                Py_ssize_t width = op == BININT1 ? 1 : (op == BININT2 ? 2 : (op == BININT ? 4 : -1));
                if (width < 0 || end - (after + 1) < width) {
                    status = 2;
                    break;
                }
                const unsigned char *v = p + after + 1;
                long long value;
                if (width == 1) {
                    value = v[0];
                }
                else if (width == 2) {
                    value = (long long)v[0] | ((long long)v[1] << 8);
                }
                else {
                    value = (long long)(int32_t)((uint32_t)v[0] | ((uint32_t)v[1] << 8)
                                                 | ((uint32_t)v[2] << 16) | ((uint32_t)v[3] << 24));
                }
                if (status == 0 && (value < 0 || value >= total || seen[value])) {
                    status = 1;
                    bad_entry = entries;
                    bad_value = PyLong_FromLongLong(value);
                    if (bad_value == NULL) {
                        goto done;
                    }
                }
                else if (status == 0) {
                    seen[value] = 1;
                }
                texts[entries].ptr = p + tpos;
                texts[entries].len = tlen;
                entries++;
                i = after + 1 + width;
            }
        }
        if (status != 2 && entries != total) {
            status = 2;
        }
        if (status != 2 && sort_finds_equal(texts, tmp, entries)) {
            status = 2;  /* equal keys: the built dict keeps fewer entries than the stream holds */
        }
    }
    if (status != 1) {
        bad_entry = -1;
        Py_CLEAR(bad_value);
    }
    if (bad_value == NULL && (bad_value = PyLong_FromLong(0)) == NULL) {
        goto done;
    }
    out = Py_BuildValue("(ninO)", entries, status, bad_entry, bad_value);
done:
    Py_XDECREF(bad_value);
    PyMem_Free(texts);
    PyMem_Free(tmp);
    PyMem_Free(seen);
    PyBuffer_Release(&view);
    return out;
}

/* The entry at p[i:]: its text (p[*text:*text + *len]), its integer opcode (p[*integer]) and the
   offset of the next entry; -1 if p[i:end] does not start with a whole entry (text, PUT or
   MEMOIZE, BININT1 / BININT2 / BININT).  Every index is checked against end before it is read. */
static Py_ssize_t
next_entry(const unsigned char *p, Py_ssize_t i, Py_ssize_t end, int put, Py_ssize_t *text, Py_ssize_t *len,
           Py_ssize_t *integer)
{
    Py_ssize_t after;
    if (put) {
        if (end - i < 5 || p[i] != BINUNICODE) {
            return -1;
        }
        unsigned long long n = (unsigned long long)p[i + 1] | ((unsigned long long)p[i + 2] << 8)
            | ((unsigned long long)p[i + 3] << 16) | ((unsigned long long)p[i + 4] << 24);
        if ((unsigned long long)(end - (i + 5)) < n + 1) {
            return -1;
        }
        *text = i + 5;
        *len = (Py_ssize_t)n;
        Py_ssize_t q = i + 5 + (Py_ssize_t)n;  /* the PUT opcode */
        Py_ssize_t w = p[q] == BINPUT ? 2 : (p[q] == LONG_BINPUT ? 5 : -1);
        if (w < 0 || end - q < w) {
            return -1;
        }
        after = q + w;
    }
    else {
        if (end - i < 2 || p[i] != SHORT_BINUNICODE) {
            return -1;
        }
        *text = i + 2;
        *len = p[i + 1];
        if (end - *text < *len + 1 || p[*text + *len] != MEMOIZE) {
            return -1;
        }
        after = *text + *len + 1;
    }
    if (end - after < 1) {
        return -1;
    }
    unsigned char op = p[after];
    Py_ssize_t width = op == BININT1 ? 1 : (op == BININT2 ? 2 : (op == BININT ? 4 : -1));
    if (width < 0 || end - (after + 1) < width) {
        return -1;
    }
    *integer = after;
    return after + 1 + width;
}

PyDoc_STRVAR(expand_run_doc,
"expand_run(data, start, end, put, /) -> (values, strings)\n\n"
"Parse the vocabulary entries in data[start:end] (a run count_entries or, with put true,\n"
"count_put_entries delimited): values is [text, int, text, int, ...] as the unpickler pushes\n"
"them, strings the texts it memoizes.  Raises ValueError if the span is not whole entries.");

static PyObject *
expand_run(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer view;
    Py_ssize_t start, end;
    int put;
    if (!PyArg_ParseTuple(args, "y*nnp:expand_run", &view, &start, &end, &put)) {
        return NULL;
    }
    PyObject *values = NULL, *strings = NULL, *out = NULL;
    if (end > view.len) {
        end = view.len;
    }
    if (start < 0 || start > end) {
        PyErr_SetString(PyExc_ValueError, "expand_run: bad span");
        goto done;
    }
    if ((values = PyList_New(0)) == NULL || (strings = PyList_New(0)) == NULL) {
        goto done;
    }
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t i = start;
    while (i < end) {
        Py_ssize_t text, len, at;
        Py_ssize_t next = next_entry(p, i, end, put, &text, &len, &at);
        if (next < 0) {
            PyErr_SetString(PyExc_ValueError, "expand_run: the span is not whole vocabulary entries");
            goto done;
        }
        const unsigned char *v = p + at + 1;
        long long value;
        if (p[at] == BININT1) {
            value = v[0];
        }
        else if (p[at] == BININT2) {
            value = (long long)v[0] | ((long long)v[1] << 8);
        }
        else {
            value = (long long)(int32_t)((uint32_t)v[0] | ((uint32_t)v[1] << 8) | ((uint32_t)v[2] << 16)
                                         | ((uint32_t)v[3] << 24));
        }
        PyObject *s = PyUnicode_DecodeUTF8((const char *)p + text, len, "surrogatepass");
        if (s == NULL) {
            goto done;
        }
        int failed = PyList_Append(values, s) < 0 || PyList_Append(strings, s) < 0;
        Py_DECREF(s);
        if (failed) {
            goto done;
        }
        PyObject *num = PyLong_FromLongLong(value);
        if (num == NULL) {
            goto done;
        }
        failed = PyList_Append(values, num) < 0;
        Py_DECREF(num);
        if (failed) {
            goto done;
        }
        i = next;
    }
    out = PyTuple_Pack(2, values, strings);
done:
    Py_XDECREF(values);
    Py_XDECREF(strings);
    PyBuffer_Release(&view);
    return out;
}

PyDoc_STRVAR(run_offsets_doc,
"run_offsets(data, start, end, put, stride, /) -> list\n\n"
"The offsets of entries 0, stride, 2*stride, ... of the run in data[start:end] (see\n"
"expand_run), so that run_text reaches any entry in fewer than stride steps.  Raises\n"
"ValueError if the span is not whole vocabulary entries.");

static PyObject *
run_offsets(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer view;
    Py_ssize_t start, end, stride;
    int put;
    if (!PyArg_ParseTuple(args, "y*nnpn:run_offsets", &view, &start, &end, &put, &stride)) {
        return NULL;
    }
    PyObject *out = NULL;
    if (end > view.len) {
        end = view.len;
    }
    if (start < 0 || start > end || stride < 1) {
        PyErr_SetString(PyExc_ValueError, "run_offsets: bad span or stride");
        goto done;
    }
    if ((out = PyList_New(0)) == NULL) {
        goto done;
    }
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t i = start, k = 0, text, len, at;
    while (i < end) {
        if (k % stride == 0) {
            PyObject *offset = PyLong_FromSsize_t(i);
            if (offset == NULL || PyList_Append(out, offset) < 0) {
                Py_XDECREF(offset);
                Py_CLEAR(out);
                goto done;
            }
            Py_DECREF(offset);
        }
        i = next_entry(p, i, end, put, &text, &len, &at);
        if (i < 0) {
            PyErr_SetString(PyExc_ValueError, "run_offsets: the span is not whole vocabulary entries");
            Py_CLEAR(out);
            goto done;
        }
        k++;
    }
done:
    PyBuffer_Release(&view);
    return out;
}

PyDoc_STRVAR(run_text_doc,
"run_text(data, at, end, put, skip, /) -> str\n\n"
"The text of the entry skip entries after the one at data[at] (within end), decoded as the\n"
"unpickler decodes it: what a memo read of that slot of the run gives.  Raises ValueError\n"
"if there is no such whole entry.");

static PyObject *
run_text(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer view;
    Py_ssize_t at, end, skip;
    int put;
    if (!PyArg_ParseTuple(args, "y*nnpn:run_text", &view, &at, &end, &put, &skip)) {
        return NULL;
    }
    PyObject *out = NULL;
    if (end > view.len) {
        end = view.len;
    }
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t i = (at < 0 || at > end || skip < 0) ? -1 : at, text = 0, len = 0, integer;
    for (Py_ssize_t k = 0; i >= 0; k++) {
        Py_ssize_t next = next_entry(p, i, end, put, &text, &len, &integer);
        if (next < 0 || k == skip) {
            i = next;
            break;
        }
        i = next;
    }
    if (i < 0) {
        PyErr_SetString(PyExc_ValueError, "run_text: no such whole vocabulary entry");
    }
    else {
        out = PyUnicode_DecodeUTF8((const char *)p + text, len, "surrogatepass");
    }
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef speedups_methods[] = {
    {"expand_run", expand_run, METH_VARARGS, expand_run_doc},
    {"run_offsets", run_offsets, METH_VARARGS, run_offsets_doc},
    {"run_text", run_text, METH_VARARGS, run_text_doc},
    {"count_entries", count_entries, METH_VARARGS, count_entries_doc},
    {"count_put_entries", count_put_entries, METH_VARARGS, count_put_entries_doc},
    {"count_values", count_values, METH_VARARGS, count_values_doc},
    {"tree_ok", tree_ok, METH_VARARGS, tree_ok_doc},
    {"dict_types", dict_types, METH_O, dict_types_doc},
    {"index_map_ok", index_map_ok, METH_O, index_map_ok_doc},
    {"index_census", index_census, METH_VARARGS, index_census_doc},
#ifdef SAFELOAD_HAVE_PREAD
    {"fill", fill, METH_VARARGS, fill_doc},
    {"progress", progress, METH_O, progress_doc},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "safeload._speedups",
    "Compiled helper for the opcode walker's hot loop (optional; see _walker.py).",
    -1,
    speedups_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
