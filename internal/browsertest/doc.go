// Package browsertest holds end-to-end tests of the two pages in headless Chromium: a
// person's view of the app. The tests build and start the real `voting all` binary on
// loopback ports, vote by clicking (with JavaScript and without), watch the results page
// change without a reload, restart the server under an open results page, check contrast
// and phone layout, and write screenshots. It has no code outside its tests.
//
// Chromium is found at $CHROMIUM, else /usr/bin/chromium (scripts/ensure-chromium installs
// it). Without it the tests skip, except under CI=true, where they fail.
//
//	go test ./internal/browsertest                        # screenshots in a temporary directory
//	go test ./internal/browsertest -artifacts -outputdir=DIR  # keep them in DIR
//	go test ./internal/browsertest -update-screenshots    # refresh docs/screenshots
package browsertest
