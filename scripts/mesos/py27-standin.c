/*
 * The Mesos library from PyPI is a CPython 2.7 extension module: besides libmesos it holds
 * a small Python binding that imports these 27 symbols. The host program never imports the
 * module, so nothing here is ever called; the library only needs the names to resolve
 * when it is loaded. Functions abort with their name should that ever change; the three
 * data objects are plain storage the loader can point at.
 */
#include <stdio.h>
#include <stdlib.h>

static void standin_called(const char *name)
{
    fprintf(stderr, "py27-standin: %s called, but no Python runtime is present\n", name);
    abort();
}

#define STANDIN(name)                                                                  \
    void name(void) { standin_called(#name); }

STANDIN(PyArg_ParseTuple)
STANDIN(PyDict_GetItemString)
STANDIN(PyErr_Format)
STANDIN(PyErr_Occurred)
STANDIN(PyErr_Print)
STANDIN(PyEval_InitThreads)
STANDIN(PyEval_RestoreThread)
STANDIN(PyEval_SaveThread)
STANDIN(PyGILState_Ensure)
STANDIN(PyGILState_Release)
STANDIN(PyImport_ImportModule)
STANDIN(PyInt_FromLong)
STANDIN(PyIter_Next)
STANDIN(PyList_GetItem)
STANDIN(PyList_New)
STANDIN(PyList_SetItem)
STANDIN(PyList_Size)
STANDIN(PyModule_AddObject)
STANDIN(PyModule_GetDict)
STANDIN(PyObject_CallMethod)
STANDIN(PyObject_GetIter)
STANDIN(PyString_AsStringAndSize)
STANDIN(PyType_Ready)
STANDIN(Py_InitModule4_64)

/* In CPython 2.7: a PyObject (refcount, type pointer) and two PyObject* globals. */
struct standin_object {
    long refcount;
    void *type;
};
struct standin_object _Py_NoneStruct = {1, NULL};
void *PyExc_Exception = NULL;
void *PyExc_TypeError = NULL;
