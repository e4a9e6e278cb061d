# Writes a man page for a program from its --help, so the page cannot drift
# from what the program accepts. Run as
#   cmake -DPROG=path -DBUILD_NAME=broker -DNAME=vigil-broker -DSUMMARY="..." \
#         -DSEE_ALSO="..." -DVERSION=0.1.0 -DOUT=file.1 -P scripts/man.cmake
# The usage lines become SYNOPSIS, with the program's build-tree name
# (BUILD_NAME, what --help says) replaced by its installed one (NAME); the
# rest of --help is the DESCRIPTION, kept as laid out (it is already
# formatted for an 80-column terminal).
foreach(v PROG BUILD_NAME NAME SUMMARY VERSION OUT)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "man.cmake: ${v} is not set")
  endif()
endforeach()
execute_process(COMMAND ${PROG} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "man.cmake: ${PROG} --help exited with ${rc}")
endif()
# roff: a backslash is \e, and a line starting with . or ' needs \& first.
string(REPLACE "\\" "\\e" help "${help}")
string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" help "${help}")
string(REGEX MATCH "^usage: [^\n]*(\n +[^\n]*)*" usage "${help}")
string(LENGTH "${usage}" ulen)
string(SUBSTRING "${help}" ${ulen} -1 body)
string(REGEX REPLACE "^usage: " "" usage "${usage}")
string(REGEX REPLACE "(^|\n) *${BUILD_NAME} " "\\1${NAME} " usage "${usage}")
string(REGEX REPLACE "^\n+" "" body "${body}")
string(TOUPPER "${NAME}" upper)
set(page ".\\\" Generated from `${NAME} --help` by scripts/man.cmake: edit the program, not this.\n")
string(APPEND page ".TH ${upper} 1 \"\" \"vigil ${VERSION}\" \"vigil manual\"\n")
string(APPEND page ".SH NAME\n${NAME} \\- ${SUMMARY}\n")
string(APPEND page ".SH SYNOPSIS\n.nf\n${usage}\n.fi\n")
string(APPEND page ".SH DESCRIPTION\n.nf\n${body}.fi\n")
if(DEFINED SEE_ALSO AND NOT SEE_ALSO STREQUAL "")
  string(APPEND page ".SH SEE ALSO\n${SEE_ALSO}\n")
endif()
file(WRITE ${OUT} "${page}")
