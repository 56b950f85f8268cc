# SQLite writes without the GIL: the history's batches, in one GIL release.
#
# The history's writer thread competes for the GIL with the pool's workers.
# Through the sqlite3 module each step of a statement releases the GIL and
# takes it back, and taking it back while the workers run costs up to a switch
# interval or more: the writer fell tens of thousands of rows behind a fast
# graph.  Here a batch is converted to C values under the GIL (no Python code
# runs, so no switch is honoured), then the whole transaction runs without it.
#
# It drives the very SQLite library the sqlite3 module uses, found through the
# loaded _sqlite3 extension: a second copy of SQLite in the process would
# break SQLite's POSIX locks on the same file.  It runs on the connection's own
# handle (the first field of CPython's pysqlite_Connection, 3.10 to 3.14), so
# the transaction and the busy timeout are the connection's.  Where any of
# this is not so, sqlite_bulk_write_available() is False and the history uses
# the sqlite3 module alone.

cdef extern from *:
    """
    #if defined(_WIN32)
    #define TL_HAVE_DLFCN 0
    #else
    #define TL_HAVE_DLFCN 1
    #include <dlfcn.h>
    #endif
    #include <string.h>

    typedef struct { PyObject_HEAD void *db; } tl_pysqlite_connection;

    typedef struct {
        int (*prepare_v2)(void *, const char *, int, void **, const char **);
        int (*bind_int64)(void *, int, long long);
        int (*bind_double)(void *, int, double);
        int (*bind_text)(void *, int, const char *, int, void *);
        int (*bind_blob)(void *, int, const void *, int, void *);
        int (*bind_null)(void *, int);
        int (*bind_parameter_count)(void *);
        int (*step)(void *);
        int (*reset)(void *);
        int (*finalize)(void *);
        int (*exec)(void *, const char *, void *, void *, char **);
        const char *(*errmsg)(void *);
        int (*extended_errcode)(void *);
        int (*get_autocommit)(void *);
        int (*libversion_number)(void);
    } tl_sqlite_api;

    static tl_sqlite_api tl_sqlite;

    /* 1 if every function was found in the library that *path* (the loaded
     * _sqlite3 extension) links, or NULL: the program itself. */
    static int tl_sqlite_resolve(const char *path) {
    #if TL_HAVE_DLFCN
        void *handle = path ? dlopen(path, RTLD_NOW | RTLD_NOLOAD) : dlopen(NULL, RTLD_NOW);
        if (!handle) return 0;
        #define TL_SQLITE_SYM(field, name) \\
            *(void **)(&tl_sqlite.field) = dlsym(handle, name); \\
            if (!tl_sqlite.field) return 0;
        TL_SQLITE_SYM(prepare_v2, "sqlite3_prepare_v2")
        TL_SQLITE_SYM(bind_int64, "sqlite3_bind_int64")
        TL_SQLITE_SYM(bind_double, "sqlite3_bind_double")
        TL_SQLITE_SYM(bind_text, "sqlite3_bind_text")
        TL_SQLITE_SYM(bind_blob, "sqlite3_bind_blob")
        TL_SQLITE_SYM(bind_null, "sqlite3_bind_null")
        TL_SQLITE_SYM(bind_parameter_count, "sqlite3_bind_parameter_count")
        TL_SQLITE_SYM(step, "sqlite3_step")
        TL_SQLITE_SYM(reset, "sqlite3_reset")
        TL_SQLITE_SYM(finalize, "sqlite3_finalize")
        TL_SQLITE_SYM(exec, "sqlite3_exec")
        TL_SQLITE_SYM(errmsg, "sqlite3_errmsg")
        TL_SQLITE_SYM(extended_errcode, "sqlite3_extended_errcode")
        TL_SQLITE_SYM(get_autocommit, "sqlite3_get_autocommit")
        TL_SQLITE_SYM(libversion_number, "sqlite3_libversion_number")
        #undef TL_SQLITE_SYM
        /* The handle stays open: the library stays loaded with _sqlite3. */
        return 1;
    #else
        (void)path;
        return 0;
    #endif
    }

    static inline void *tl_connection_db(PyObject *connection) {
        return ((tl_pysqlite_connection *)connection)->db;
    }

    enum { TL_SQL_NULL, TL_SQL_INT, TL_SQL_FLOAT, TL_SQL_TEXT, TL_SQL_BLOB };

    typedef struct {
        int kind;
        int size;
        long long integer;
        double real;
        const char *data;
    } tl_sql_value;

    #define TL_SQLITE_OK 0
    #define TL_SQLITE_ROW 100
    #define TL_SQLITE_DONE 101
    #define TL_SQLITE_STATIC ((void *)0)

    /* Runs without the GIL: BEGIN IMMEDIATE, every row of every statement,
     * COMMIT; on an error, the message is copied into *message* (size
     * message_size) and the transaction rolled back.  Returns SQLite's
     * extended result code, TL_SQLITE_OK on success. */
    static int tl_sqlite_write(
        void *db, void **statements, const int *row_counts, const int *widths,
        const int *groups, int statement_count, const tl_sql_value *values,
        char *message, size_t message_size
    ) {
        int rc = tl_sqlite.exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        const tl_sql_value *value = values;
        int s, r, p, offset;
        if (rc != TL_SQLITE_OK) goto failed;
        for (s = 0; s < statement_count; s++) {
            void *statement = statements[s];
            for (r = 0; r < row_counts[s]; r++) {
                /* groups[s] rows make one execution of the statement. */
                offset = (r % groups[s]) * widths[s] + 1;
                for (p = 0; p < widths[s]; p++, value++) {
                    switch (value->kind) {
                    case TL_SQL_INT:
                        rc = tl_sqlite.bind_int64(statement, offset + p, value->integer); break;
                    case TL_SQL_FLOAT:
                        rc = tl_sqlite.bind_double(statement, offset + p, value->real); break;
                    case TL_SQL_TEXT:
                        rc = tl_sqlite.bind_text(
                            statement, offset + p, value->data, value->size, TL_SQLITE_STATIC);
                        break;
                    case TL_SQL_BLOB:
                        rc = tl_sqlite.bind_blob(
                            statement, offset + p, value->data, value->size, TL_SQLITE_STATIC);
                        break;
                    default:
                        rc = tl_sqlite.bind_null(statement, offset + p);
                    }
                    if (rc != TL_SQLITE_OK) goto failed_in_statement;
                }
                if ((r + 1) % groups[s] != 0) continue;
                rc = tl_sqlite.step(statement);
                if (rc != TL_SQLITE_DONE && rc != TL_SQLITE_ROW) goto failed_in_statement;
                tl_sqlite.reset(statement);
            }
        }
        rc = tl_sqlite.exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != TL_SQLITE_OK) goto failed;
        return TL_SQLITE_OK;
    failed_in_statement:
    failed:
        {
            /* The extended code says more than the primary one returned. */
            int extended = tl_sqlite.extended_errcode(db);
            if (extended != TL_SQLITE_OK) rc = extended;
            else if (rc == TL_SQLITE_OK) rc = 1;  /* SQLITE_ERROR */
        }
        strncpy(message, tl_sqlite.errmsg(db), message_size - 1);
        message[message_size - 1] = '\\0';
        for (s = 0; s < statement_count; s++) tl_sqlite.reset(statements[s]);
        if (!tl_sqlite.get_autocommit(db)) tl_sqlite.exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    """
    ctypedef struct tl_sql_value:
        int kind
        int size
        long long integer
        double real
        const char *data
    ctypedef struct tl_sqlite_api:
        int (*prepare_v2)(void *, const char *, int, void **, const char **) nogil
        int (*bind_parameter_count)(void *) nogil
        int (*finalize)(void *) nogil
        const char *(*errmsg)(void *) nogil
        int (*extended_errcode)(void *) nogil
        int (*get_autocommit)(void *) nogil
        int (*libversion_number)() nogil
    tl_sqlite_api tl_sqlite
    int TL_SQL_NULL, TL_SQL_INT, TL_SQL_FLOAT, TL_SQL_TEXT, TL_SQL_BLOB
    int tl_sqlite_resolve(const char *path)
    void *tl_connection_db(object connection)
    int tl_sqlite_write(
        void *db, void **statements, const int *row_counts, const int *widths,
        const int *groups, int statement_count, const tl_sql_value *values,
        char *message, size_t message_size
    ) nogil


cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object o, Py_ssize_t *size) except NULL
    int PyBytes_AsStringAndSize(object o, char **buffer, Py_ssize_t *length) except -1
    long long PyLong_AsLongLong(object o) except? -1


cdef int _sqlite_api_state = -1  # -1: not looked for yet; 0: unavailable; 1: resolved


def sqlite_bulk_write_available():
    """True if :func:`sqlite_bulk_write` can run here (see the comment above)."""
    global _sqlite_api_state
    if _sqlite_api_state < 0:
        _sqlite_api_state = _resolve_sqlite_api()
    return _sqlite_api_state == 1


cdef int _resolve_sqlite_api() except -1:
    import sqlite3
    import sys

    if sys.implementation.name != "cpython" or not (3, 10) <= sys.version_info[:2] <= (3, 14):
        return 0
    try:
        import _sqlite3
    except ImportError:
        return 0
    path = getattr(_sqlite3, "__file__", None)
    cdef bytes encoded
    if path is None:
        found = tl_sqlite_resolve(NULL)  # built into the interpreter
    else:
        encoded = os_fsencode(path)
        found = tl_sqlite_resolve(encoded)
    if not found:
        return 0
    # The library found must be the one the module reports (not another copy).
    version = sqlite3.sqlite_version_info
    expected = version[0] * 1000000 + version[1] * 1000 + version[2]
    return 1 if tl_sqlite.libversion_number() == expected else 0


cdef object os_fsencode(object path):
    import os

    return os.fsencode(path)


cdef int _checked_size(Py_ssize_t size) except -1:
    if size > 2147483647:
        import sqlite3

        raise sqlite3.DataError("string or blob too big")
    return <int>size


# Primary result codes to the sqlite3 module's exception classes, as it maps them.
cdef object _sqlite_error(int code, str message):
    import sqlite3

    primary = code & 0xFF
    if primary in (2, 12):  # SQLITE_INTERNAL, SQLITE_NOTFOUND
        cls = sqlite3.InternalError
    elif primary == 7:  # SQLITE_NOMEM
        return MemoryError(message)
    elif primary == 11:  # SQLITE_CORRUPT
        cls = sqlite3.DatabaseError
    elif primary == 18:  # SQLITE_TOOBIG
        cls = sqlite3.DataError
    elif primary in (19, 20):  # SQLITE_CONSTRAINT, SQLITE_MISMATCH
        cls = sqlite3.IntegrityError
    elif primary in (21, 25):  # SQLITE_MISUSE, SQLITE_RANGE
        cls = sqlite3.ProgrammingError
    else:  # ERROR, PERM, ABORT, BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, ...
        cls = sqlite3.OperationalError
    error = cls(message)
    error.sqlite_errorcode = code
    return error


def sqlite_bulk_write(connection, statements):
    """Run each ``(sql, rows, group)`` of *statements*, in one transaction.

    *sql* runs once per *group* rows (an ``INSERT`` of *group* rows in one
    ``VALUES`` list, which SQLite inserts faster than as many statements):
    its parameters are the next *group* rows, in order; *rows* holds a whole
    number of groups.  ``BEGIN IMMEDIATE`` first and ``COMMIT`` last, on
    *connection* (a ``sqlite3.Connection`` in autocommit mode,
    ``isolation_level=None``, not in a transaction).  Values may be None, int,
    float, str or bytes.  On an error the transaction is rolled back and the
    error raised as the sqlite3 module raises it.  The transaction runs
    without the GIL.
    """
    import sqlite3

    if not sqlite_bulk_write_available():
        raise RuntimeError("SQLite cannot be driven natively here (sqlite_bulk_write_available)")
    if type(connection) is not sqlite3.Connection:
        raise TypeError(f"connection must be a sqlite3.Connection, not {type(connection).__name__}")
    cdef void *db = tl_connection_db(connection)
    if db == NULL:
        raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
    cdef list plan = []
    for sql, rows, group in statements:
        if type(group) is not int or group < 1:
            raise ValueError(f"group must be an int >= 1, not {group!r}")
        if len(rows) % group:
            raise ValueError(f"{len(rows)} rows are not a whole number of groups of {group}")
        if len(rows):
            # Our own copies (rows of tuples): nothing another thread does to
            # the caller's lists can free a value bound while the GIL is
            # released.
            rows = tuple([row if type(row) is tuple else tuple(row) for row in rows])
            plan.append((sql, rows, group))
    if not tl_sqlite.get_autocommit(db):
        raise sqlite3.ProgrammingError("a transaction is already open on this connection")
    cdef int count = len(plan)
    if count == 0:
        return
    cdef Py_ssize_t total = 0
    cdef Py_ssize_t size
    cdef int s, p, width, rc
    cdef const char *text
    cdef const char *tail
    cdef char *buffer
    cdef char message[512]
    cdef void **prepared = <void **>calloc(count, sizeof(void *))
    cdef int *row_counts = <int *>calloc(count, sizeof(int))
    cdef int *widths = <int *>calloc(count, sizeof(int))
    cdef int *groups = <int *>calloc(count, sizeof(int))
    cdef tl_sql_value *values = NULL
    cdef tl_sql_value *value
    # Holds every value bound (the text and blob pointers point into them)
    # until the transaction is over.
    cdef list keep = []
    try:
        if prepared == NULL or row_counts == NULL or widths == NULL or groups == NULL:
            raise MemoryError()
        for s in range(count):
            sql, rows, group = plan[s]
            keep.append(rows)
            text = PyUnicode_AsUTF8AndSize(sql, &size)
            rc = tl_sqlite.prepare_v2(db, text, <int>size, &prepared[s], &tail)
            if rc != 0 or prepared[s] == NULL:
                raise _sqlite_error(
                    tl_sqlite.extended_errcode(db) if rc else 1,
                    tl_sqlite.errmsg(db).decode("utf-8", "replace") if rc else "empty statement",
                )
            if text[tail - text:size].strip(b" \t\r\n;"):
                raise sqlite3.ProgrammingError("You can only execute one statement at a time.")
            width = tl_sqlite.bind_parameter_count(prepared[s])
            if width % group:
                raise sqlite3.ProgrammingError(
                    f"the statement's {width} parameters are not {group} rows' worth"
                )
            groups[s] = group
            widths[s] = width // group
            row_counts[s] = len(rows)
            total += <Py_ssize_t>row_counts[s] * widths[s]
        values = <tl_sql_value *>malloc((total or 1) * sizeof(tl_sql_value))
        if values == NULL:
            raise MemoryError()
        value = values
        for s in range(count):
            width = widths[s]
            for row in plan[s][1]:
                if len(row) != width:
                    raise sqlite3.ProgrammingError(
                        f"Incorrect number of bindings supplied. The current statement "
                        f"uses {width} a row, and there are {len(row)} supplied."
                    )
                for p in range(width):
                    item = row[p]
                    value.size = 0
                    if item is None:
                        value.kind = TL_SQL_NULL
                    elif type(item) is str:
                        value.kind = TL_SQL_TEXT
                        value.data = PyUnicode_AsUTF8AndSize(item, &size)
                        value.size = _checked_size(size)
                    elif type(item) is float:
                        value.kind = TL_SQL_FLOAT
                        value.real = <double>item
                    elif isinstance(item, int):
                        value.kind = TL_SQL_INT
                        try:
                            value.integer = PyLong_AsLongLong(item)
                        except OverflowError:
                            raise OverflowError(
                                "Python int too large to convert to SQLite INTEGER"
                            ) from None
                    elif type(item) is bytes:
                        value.kind = TL_SQL_BLOB
                        PyBytes_AsStringAndSize(item, &buffer, &size)
                        value.data = buffer
                        value.size = _checked_size(size)
                    elif isinstance(item, float):
                        value.kind = TL_SQL_FLOAT
                        value.real = <double>item
                    elif isinstance(item, str):
                        # A subclass: bind the plain string (kept alive below).
                        item = str.__str__(item)
                        keep.append(item)
                        value.kind = TL_SQL_TEXT
                        value.data = PyUnicode_AsUTF8AndSize(item, &size)
                        value.size = _checked_size(size)
                    else:
                        raise sqlite3.ProgrammingError(
                            f"Error binding parameter {p + 1}: type "
                            f"'{type(item).__name__}' is not supported"
                        )
                    value += 1
        with nogil:
            rc = tl_sqlite_write(
                db, prepared, row_counts, widths, groups, count, values, message, sizeof(message)
            )
        if rc != 0:
            raise _sqlite_error(rc, message.decode("utf-8", "replace"))
    finally:
        for s in range(count):
            if prepared != NULL and prepared[s] != NULL:
                tl_sqlite.finalize(prepared[s])
        free(prepared)
        free(row_counts)
        free(widths)
        free(groups)
        free(values)
