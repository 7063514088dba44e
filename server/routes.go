package server

import (
	"net/http"
	"slices"
	"strings"

	"github.com/hacheck/hacheck/check"
)

// routes are hacheck's HTTP endpoints other than the checks. Everything that needs to know
// them is derived from this table: the mux New builds, and which paths ServeHTTP leaves to the
// mux rather than counting them as checks (see routeRoots and rootsFor). Adding an endpoint is one line
// here; the pattern is http.ServeMux's, with its method.
var routes = []route{
	{"GET /status", handlerOf((*Server).handleStatus)},
	{"GET /status/count", handlerOf((*Server).handleStatusCount)},
	{"GET /recent", handlerOf((*Server).handleRecent)},
	{"GET /metrics", func(s *Server) http.Handler { return s.metrics.Handler() }},
	{"POST /spool/{service}/{port}/status", handlerOf((*Server).handleSpoolChange)},
	{"GET /lb/{service}", handlerOf((*Server).handleLB)},
	{"GET /{$}", handlerOf((*Server).handleLanding)},
}

// route is one endpoint: its ServeMux pattern and how to get its handler from the server.
type route struct {
	pattern string
	handler func(*Server) http.Handler
}

// handlerOf turns a handler method into a route's handler.
func handlerOf(f func(*Server, http.ResponseWriter, *http.Request)) func(*Server) http.Handler {
	return func(s *Server) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f(s, w, r) })
	}
}

// newMux serves every route of the table.
func (s *Server) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.pattern, rt.handler(s))
	}
	return mux
}

// routeRoots maps the first path segment of every route to the methods routed under it ("" for
// a pattern without a method: every method). A check path of three or more segments under one of
// these roots belongs to the mux; under a root that is a protocol too ("spool"), only the
// routed methods do.
var routeRoots = rootsOf(routes)

func rootsOf(rs []route) map[string][]string {
	roots := make(map[string][]string, len(rs))
	for _, rt := range rs {
		method, path, found := strings.Cut(rt.pattern, " ")
		if !found {
			method, path = "", rt.pattern
		}
		// A pattern may name a host before its path; the root is the path's first segment.
		path = path[strings.IndexByte(path, '/')+1:]
		root, _, _ := strings.Cut(path, "/")
		if strings.HasPrefix(root, "{") {
			// "/{$}" (the root page alone) reaches no check path; a wildcard root would take
			// every check from the pipeline.
			if root != "{$}" {
				panic("server: route " + rt.pattern + " has a wildcard first segment")
			}
			root = ""
		}
		roots[root] = append(roots[root], method)
	}
	return roots
}

// pathRoot is what ServeHTTP needs to know of a first path segment: whether it names a protocol
// and which methods routes take under it.
type pathRoot struct {
	protocol bool
	routed   bool
	methods  []string
}

// rootsFor joins the protocols and the route table's roots into one map, so that ServeHTTP
// routes a check with the one lookup it made before there was a table. Rebuilt whenever the
// protocols may change (New, Apply).
func rootsFor(protocols check.Registry) *map[string]pathRoot {
	roots := make(map[string]pathRoot, len(protocols)+len(routeRoots))
	for name := range protocols {
		roots[name] = pathRoot{protocol: true}
	}
	for name, methods := range routeRoots {
		root := roots[name]
		root.routed, root.methods = true, methods
		roots[name] = root
	}
	return &roots
}

// routedMethod reports whether one of a root's route methods serves method: a GET route
// serves HEAD too, as ServeMux does.
func routedMethod(methods []string, method string) bool {
	for _, m := range methods {
		if m == "" || m == method || (m == http.MethodGet && method == http.MethodHead) {
			return true
		}
	}
	return false
}

// allowOnCheckPath is the Allow header for a check path asked with a method checks do not
// take: GET and HEAD, and the method of every route the table has for that very path (a POST
// to /spool/<service>/<port>/status changes the spool).
func (s *Server) allowOnCheckPath(r *http.Request, root string) string {
	allow := []string{http.MethodGet, http.MethodHead}
	for _, m := range routeRoots[root] {
		if m == "" || slices.Contains(allow, m) {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
		}
	}
	return strings.Join(allow, ", ")
}
